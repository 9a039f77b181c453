package main

import (
	"flag"

	"mailwarden/internal/config"
	"mailwarden/internal/daemon"
)

// parseFlags parses fs over args, allowing flags after positional
// arguments ("greylist allow IP S R --config F"), and returns the
// positional arguments.
func parseFlags(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		args = fs.Args()
		if len(args) == 0 {
			return pos, nil
		}
		if args[0] == "--" {
			return append(pos, args[1:]...), nil
		}
		pos = append(pos, args[0])
		args = args[1:]
	}
}

// configFlags defines --config and --data for a command that reads the
// config or the store itself, without the daemon.
func configFlags(fs *flag.FlagSet) (configPath, dataDir *string) {
	return fs.String("config", "", "config `file` (default: built-in defaults)"),
		fs.String("data", "", "data `directory` (overrides data_dir)")
}

// withConfig defines --config and --data, like configFlags, and returns
// the runFunc that loads the config as serve would and runs run with
// it; a config that does not load ends the command with exit status 2.
func withConfig(fs *flag.FlagSet, run func(c *call, cfg config.Config) int) runFunc {
	configPath, dataDir := configFlags(fs)
	return func(c *call) int {
		cfg, err := daemon.LoadConfig(*configPath, *dataDir)
		if err != nil {
			return c.usage("%v", err)
		}
		return run(c, cfg)
	}
}

// jsonFlag defines --json, which the commands that print a table take.
func jsonFlag(fs *flag.FlagSet) *bool {
	return fs.Bool("json", false, "print JSON instead of a table")
}
