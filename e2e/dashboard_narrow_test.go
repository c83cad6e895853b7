package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// dashBox is where an element lies, in CSS pixels, and how wide its
// content is (scrollWidth) against its box (clientWidth).
type dashBox struct {
	Right, ScrollWidth, ClientWidth float64
	OverflowX                       string
}

// dashLayout measures the page, the nodes table and the element around it.
type dashLayout struct {
	ViewportWidth, PageScrollWidth float64
	Panel, Container, Table        dashBox
}

func (p *dashTab) layout(t *testing.T) dashLayout {
	t.Helper()
	ctx, cancel := context.WithTimeout(p.ctx, 10*time.Second)
	defer cancel()
	s, err := chromedp.Run(ctx, chromedp.Evaluate[string](`(() => {
		const box = e => ({
			Right: e.getBoundingClientRect().right,
			ScrollWidth: e.scrollWidth,
			ClientWidth: e.clientWidth,
			OverflowX: getComputedStyle(e).overflowX,
		});
		const table = document.getElementById('nodes');
		return JSON.stringify({
			ViewportWidth: document.documentElement.clientWidth,
			PageScrollWidth: document.documentElement.scrollWidth,
			Panel: box(table.closest('section')),
			Container: box(table.parentElement),
			Table: box(table),
		});
	})()`))
	if err != nil {
		t.Fatalf("measuring the page: %v\n%s", err, p.state())
	}
	var l dashLayout
	if err := json.Unmarshal([]byte(s), &l); err != nil {
		t.Fatalf("measuring the page: %v: %s", err, s)
	}
	return l
}

// dashFillNodeRow writes figures into node 1's row, as the page would
// show them for a node that busy; the next stats message overwrites them,
// so the layout is measured at once.
func dashFillNodeRow(figures []string) string {
	b, _ := json.Marshal(figures)
	return `(() => {
		const r = document.querySelector('#nodes tbody tr[data-node="1"]');
		const f = ` + string(b) + `;
		r.querySelectorAll('td.num').forEach((td, i) => { td.textContent = f[i % f.length]; });
		return true;
	})()`
}

// A busy node: 10k connections, 100k subscriptions, a million deliveries
// per second, 12 MiB buffered.
var dashBusyFigures = []string{"10,000", "100,000", "10,000", "12,345", "12,345", "1,234,567", "12,345", "123", "12.3 MiB", "1.2 ms"}

// TestDashboardNodesTableAt800px: in a window 800 pixels wide, the nodes
// table of a busy node fits its panel, with no sideways scrolling; in a
// narrower window, or with absurd figures, the element around the table
// scrolls sideways and the page itself never does.
func TestDashboardNodesTableAt800px(t *testing.T) {
	chrome, bin := dashChecks(t)
	_, _, httpURL := dashGateway(t, bin, "firetower", "127.0.0.1:0", "127.0.0.1:0")
	absurd := []string{"1,234,567,890"}
	for _, c := range []struct {
		width   int64
		figures []string
		fit     bool // the table fits without scrolling
	}{
		{800, dashBusyFigures, true},
		{800, absurd, false},
		{600, dashBusyFigures, false},
	} {
		tab := dashOpenSized(t, chrome, httpURL+"/dashboard/", c.width, 600)
		tab.until(t, "node 1 shows, live", dashNode(1, "live"))
		tab.until(t, "the figures are written", dashFillNodeRow(c.figures))
		l := tab.layout(t)
		failed := t.Failed()
		name := fmt.Sprintf("%d px, figures %q", c.width, c.figures[0])
		if l.PageScrollWidth > l.ViewportWidth {
			t.Errorf("%s: the page is %v px wide in a %v px viewport: it scrolls sideways", name, l.PageScrollWidth, l.ViewportWidth)
		}
		if l.Panel.Right > l.ViewportWidth || l.Container.Right > l.Panel.Right {
			t.Errorf("%s: the nodes panel ends at %v px and the table's container at %v px, in a viewport of %v px",
				name, l.Panel.Right, l.Container.Right, l.ViewportWidth)
		}
		fits := l.Table.ScrollWidth <= l.Container.ClientWidth
		scrolls := l.Container.OverflowX == "auto" || l.Container.OverflowX == "scroll"
		if c.fit && !fits {
			t.Errorf("%s: the table is %v px wide, its container %v px: it does not fit", name, l.Table.ScrollWidth, l.Container.ClientWidth)
		}
		if !fits && !scrolls {
			t.Errorf("%s: the table is %v px wide in a container of %v px that does not scroll (overflow-x %s)",
				name, l.Table.ScrollWidth, l.Container.ClientWidth, l.Container.OverflowX)
		}
		if t.Failed() && !failed {
			t.Logf("%s: %+v", name, l)
		}
	}
}
