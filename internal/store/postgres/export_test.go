package postgres

// CacheInUse reports whether the store keeps what it reads of tokens and environments
// (ListenCache is listening).
func CacheInUse(s *Store) bool { return s.d.cache.Enabled() }
