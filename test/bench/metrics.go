package main

import (
	"strconv"
	"strings"
)

// sample is one line of the Prometheus text format.
type sample struct {
	name   string
	labels map[string]string
	value  float64
}

// metrics is one scrape of the manager's /metrics.
type metrics []sample

// parseMetrics reads the Prometheus text exposition format: enough of it for
// counters and gauges (comments skipped, label values unescaped). A small
// parser keeps the program free of a direct dependency on
// prometheus/common.
func parseMetrics(text string) metrics {
	var out metrics
	for _, line := range strings.Split(text, "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		s := sample{labels: map[string]string{}}
		var rest string
		if i := strings.IndexAny(line, "{ "); i >= 0 && line[i] == '{' {
			s.name = line[:i]
			var ok bool
			if rest, ok = parseLabels(line[i+1:], s.labels); !ok {
				continue
			}
		} else if i >= 0 {
			s.name, rest = line[:i], line[i:]
		} else {
			continue
		}
		fields := strings.Fields(rest)
		if len(fields) == 0 {
			continue
		}
		v, err := strconv.ParseFloat(fields[0], 64)
		if err != nil {
			continue
		}
		s.value = v
		out = append(out, s)
	}
	return out
}

// parseLabels reads `a="x",b="y"}` into labels and returns what follows.
func parseLabels(s string, labels map[string]string) (string, bool) {
	for {
		s = strings.TrimLeft(s, " ,")
		if strings.HasPrefix(s, "}") {
			return s[1:], true
		}
		eq := strings.IndexByte(s, '=')
		if eq < 0 || eq+1 >= len(s) || s[eq+1] != '"' {
			return "", false
		}
		name := s[:eq]
		var val strings.Builder
		i := eq + 2
		for ; i < len(s) && s[i] != '"'; i++ {
			if s[i] == '\\' && i+1 < len(s) {
				i++
				switch s[i] {
				case 'n':
					val.WriteByte('\n')
				default:
					val.WriteByte(s[i])
				}
				continue
			}
			val.WriteByte(s[i])
		}
		if i >= len(s) {
			return "", false
		}
		labels[name] = val.String()
		s = s[i+1:]
	}
}

// sum adds the values of the samples named name whose labels match (all
// of them when match is nil).
func (m metrics) sum(name string, match func(map[string]string) bool) float64 {
	total := 0.0
	for _, s := range m {
		if s.name == name && (match == nil || match(s.labels)) {
			total += s.value
		}
	}
	return total
}

// writeMethods are the HTTP methods that change something in the API.
var writeMethods = []string{"POST", "PUT", "PATCH", "DELETE"}

// requestCounts are the manager's API requests by HTTP method, from
// client-go's rest_client_requests_total (every client in the process:
// the cached client, the API reader, informers and the event recorder).
type requestCounts map[string]float64

func (m metrics) requests() requestCounts {
	out := requestCounts{}
	for _, s := range m {
		if s.name == "rest_client_requests_total" {
			out[s.labels["method"]] += s.value
		}
	}
	return out
}

// minus is the difference between two scrapes of the same process.
func (r requestCounts) minus(before requestCounts) requestCounts {
	out := requestCounts{}
	for k, v := range r {
		if d := v - before[k]; d != 0 {
			out[k] = d
		}
	}
	return out
}

func (r requestCounts) writes() float64 {
	total := 0.0
	for _, m := range writeMethods {
		total += r[m]
	}
	return total
}

func (r requestCounts) reads() float64 { return r["GET"] }

func (m metrics) reconciles() float64 { return m.sum("controller_runtime_reconcile_total", nil) }

// reconcileErrors counts reconciles that returned an error (conflicts,
// API errors): each is retried, so they show up as extra reconciles.
func (m metrics) reconcileErrors() float64 {
	return m.sum("controller_runtime_reconcile_total", func(l map[string]string) bool { return l["result"] == "error" })
}
