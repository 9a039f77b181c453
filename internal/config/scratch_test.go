package config
import ("fmt";"testing";"os";"path/filepath";"strconv";"strings";"time")
func TestScratch(t *testing.T){
 fs, _ := filepath.Glob(os.Getenv("D")+"/*")
 for _, p := range fs {
  b, _ := os.ReadFile(p)
  l := strings.SplitN(string(b), "\n", 2)[1]
  l = strings.TrimSpace(l)
  s, err := strconv.Unquote(strings.TrimSuffix(strings.TrimPrefix(l, "[]byte("), ")"))
  if err != nil { fmt.Println("unquote", p, err); continue }
  st := time.Now()
  Parse("x", []byte(s))
  if d := time.Since(st); d > 20*time.Millisecond { fmt.Println(p, len(s), d) }
 }
}
