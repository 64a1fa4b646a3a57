//! `/metrics` in Prometheus' text format: requests by route pattern, method and status,
//! and their latency as a histogram. Counted by a middleware; no library needed for
//! two metric families.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;
use std::time::Instant;

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::middleware::Next;
use actix_web::web;

/// Latency buckets in seconds.
const BUCKETS: [f64; 10] = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 5.0];

#[derive(Default)]
pub struct Metrics {
    requests: Mutex<BTreeMap<(String, String, u16), Series>>,
}

#[derive(Default, Clone)]
struct Series {
    count: u64,
    sum_s: f64,
    buckets: [u64; BUCKETS.len()],
}

impl Metrics {
    pub fn observe(&self, route: &str, method: &str, status: u16, seconds: f64) {
        let mut requests = self.requests.lock().expect("metrics lock");
        let series = requests.entry((route.to_string(), method.to_string(), status)).or_default();
        series.count += 1;
        series.sum_s += seconds;
        for (bucket, le) in series.buckets.iter_mut().zip(BUCKETS) {
            if seconds <= le {
                *bucket += 1;
            }
        }
    }

    pub fn render(&self) -> String {
        let requests = self.requests.lock().expect("metrics lock").clone();
        let mut out = String::new();
        out.push_str("# HELP plumb_http_requests_total HTTP requests by route, method and status.\n");
        out.push_str("# TYPE plumb_http_requests_total counter\n");
        for ((route, method, status), s) in &requests {
            let _ = writeln!(
                out,
                "plumb_http_requests_total{{route=\"{}\",method=\"{method}\",status=\"{status}\"}} {}",
                escape(route),
                s.count
            );
        }
        out.push_str("# HELP plumb_http_request_duration_seconds HTTP request latency.\n");
        out.push_str("# TYPE plumb_http_request_duration_seconds histogram\n");
        for ((route, method, status), s) in &requests {
            let labels = format!("route=\"{}\",method=\"{method}\",status=\"{status}\"", escape(route));
            for (le, n) in BUCKETS.iter().zip(s.buckets) {
                let _ =
                    writeln!(out, "plumb_http_request_duration_seconds_bucket{{{labels},le=\"{le}\"}} {n}");
            }
            let _ = writeln!(
                out,
                "plumb_http_request_duration_seconds_bucket{{{labels},le=\"+Inf\"}} {}",
                s.count
            );
            let _ = writeln!(out, "plumb_http_request_duration_seconds_sum{{{labels}}} {}", s.sum_s);
            let _ = writeln!(out, "plumb_http_request_duration_seconds_count{{{labels}}} {}", s.count);
        }
        out
    }
}

fn escape(label: &str) -> String {
    label.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

/// Counts every request under its route pattern (`/runs/{id}`, not `/runs/7`), so that
/// the number of series stays bounded.
pub async fn count(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let started = Instant::now();
    let metrics = req.app_data::<web::Data<Metrics>>().cloned();
    let route = req.match_pattern().unwrap_or_else(|| "(unmatched)".to_string());
    let method = req.method().to_string();
    let response = next.call(req).await?;
    if let Some(metrics) = metrics {
        metrics.observe(&route, &method, response.status().as_u16(), started.elapsed().as_secs_f64());
    }
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_is_counted_in_its_series_and_buckets() {
        let m = Metrics::default();
        m.observe("/runs/{id}", "GET", 200, 0.003);
        m.observe("/runs/{id}", "GET", 200, 0.2);
        let text = m.render();
        assert!(
            text.contains("plumb_http_requests_total{route=\"/runs/{id}\",method=\"GET\",status=\"200\"} 2"),
            "{text}"
        );
        assert!(text.contains("le=\"0.005\"} 1"), "{text}");
        assert!(text.contains("le=\"0.25\"} 2"), "{text}");
    }
}
