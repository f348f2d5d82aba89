package runtimeapi

// WaitingNext reports how many connections of s wait in invocation/next
// for an invocation.
func WaitingNext(s *Server) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.waiting)
}

// WaitedForOwner reports how many requests to s have waited for SetOwner.
func WaitedForOwner(s *Server) int64 { return s.ownerWaits.Load() }
