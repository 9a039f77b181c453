package mailboxtest

func firstNames() []string {
	return []string{"anna", "ben", "carla", "david", "emma", "frank", "greta", "hans", "ines", "jan",
		"karin", "lars", "maria", "nils", "olga", "peter", "rosa", "sven", "tina", "uwe", "vera",
		"walter", "yusuf", "zoe", "ahmed", "bianca", "chen", "diego", "elif", "fatima", "george",
		"helen", "igor", "julia", "kofi", "lena", "marco", "nora", "oscar", "paula"}
}

func lastNames() []string {
	return []string{"smith", "jones", "mueller", "schmidt", "garcia", "rossi", "dubois", "jansen",
		"novak", "kowalski", "nielsen", "brown", "wilson", "taylor", "martin", "weber", "meyer",
		"fischer", "becker", "hoffmann", "silva", "santos", "yilmaz", "kaya", "tanaka", "kim"}
}

func domainWords() []string {
	return []string{"oak", "river", "north", "summit", "harbor", "maple", "cedar", "lake", "stone",
		"green", "bright", "silver", "pine", "meadow", "valley", "eagle", "fox", "willow", "iron",
		"blue", "clear", "west", "east", "south", "hill", "field", "bay", "park", "crest", "ridge",
		"dental", "law", "bakery", "school", "clinic", "garage", "studio", "farm", "books", "tools"}
}
