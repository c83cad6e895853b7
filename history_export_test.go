package firetower

import "time"

// SetHistoryClock makes m's history read the time from now (tests of TTL).
func SetHistoryClock(m *LocalManager, now func() time.Time) { m.hist.now = now }
