//! Issue 16: every operation of `/api/openapi.json`, walked with hostile input — NUL
//! bytes, non-numeric and out-of-range ids, wrong types, unknown fields, huge and
//! negative numbers, an oversized body — answers a JSON 4xx naming the problem, and
//! writes nothing (every table's row count is unchanged).

use reqwest::Method;
use serde_json::{json, Map, Value};

use crate::db::with_db;
use crate::web_app::{client, spawn_app, TestApp};

/// Every table's row count.
async fn row_counts(app: &TestApp) -> Vec<(String, i64)> {
    let tables: Vec<String> = sqlx::query_scalar(
        "SELECT tablename::text FROM pg_tables WHERE schemaname = 'public' AND tablename <> '_sqlx_migrations'
         ORDER BY tablename",
    )
    .fetch_all(&app.db.pool)
    .await
    .unwrap();
    let mut counts = Vec::new();
    for table in tables {
        let n: i64 = sqlx::query_scalar(&format!("SELECT count(*) FROM \"{table}\""))
            .fetch_one(&app.db.pool)
            .await
            .unwrap();
        counts.push((table, n));
    }
    counts
}

/// A document's `$ref` followed, once.
fn resolved<'a>(doc: &'a Value, schema: &'a Value) -> &'a Value {
    match schema["$ref"].as_str().and_then(|r| r.strip_prefix("#/components/schemas/")) {
        Some(name) => &doc["components"]["schemas"][name],
        None => schema,
    }
}

/// One hostile request: what it is, the path, the query and the body.
struct Probe {
    what: String,
    path: String,
    body: Option<Vec<u8>>,
}

/// The hostile requests for one operation.
fn probes(doc: &Value, path: &str, op: &Value) -> Vec<Probe> {
    let params: Vec<String> = path
        .split('/')
        .filter_map(|s| s.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
        .map(String::from)
        .collect();
    let fill = |hostile: Option<(&str, &str)>| {
        let mut p = path.to_string();
        for name in &params {
            let value = match hostile {
                Some((h, v)) if h == name => v.to_string(),
                _ => "1".to_string(),
            };
            p = p.replace(&format!("{{{name}}}"), &value);
        }
        p
    };
    let mut probes = Vec::new();
    for name in &params {
        for (what, value) in [
            ("a NUL byte", "a%00b"),
            ("a huge number", "99999999999999999999999"),
            ("a control character", "a%0Ab"),
        ] {
            probes.push(Probe {
                what: format!("{what} as {{{name}}}"),
                path: fill(Some((name, value))),
                body: None,
            });
        }
    }
    let base = fill(None);
    for parameter in op["parameters"].as_array().into_iter().flatten() {
        if parameter["in"] != "query" {
            continue;
        }
        let name = parameter["name"].as_str().unwrap();
        let schema = &parameter["schema"];
        let mut values = vec![("a NUL byte", "a%00b".to_string())];
        if schema["type"] == "integer" {
            values.push(("not a number", "abc".into()));
            values.push(("a huge number", "99999999999999999999999".into()));
            if let Some(min) = schema["minimum"].as_i64() {
                values.push(("below the minimum", (min - 1).to_string()));
            }
            if let Some(max) = schema["maximum"].as_i64() {
                values.push(("above the maximum", (max + 1).to_string()));
            }
        }
        for (what, value) in values {
            probes.push(Probe {
                what: format!("{what} as ?{name}"),
                path: format!("{base}?{name}={value}"),
                body: None,
            });
        }
    }
    let Some(schema) = op["requestBody"]["content"]["application/json"]["schema"]
        .as_object()
        .map(|_| resolved(doc, &op["requestBody"]["content"]["application/json"]["schema"]))
    else {
        return probes;
    };
    let body = |what: String, value: Value| Probe {
        what,
        path: base.clone(),
        body: Some(value.to_string().into_bytes()),
    };
    probes.push(body("an unknown field".into(), json!({ "zz_not_a_field": 1 })));
    probes.push(body("a body that is not an object".into(), json!([1, 2])));
    probes.push(Probe {
        what: "an oversized body".into(),
        path: base.clone(),
        body: Some(vec![b' '; 17 * 1024 * 1024]),
    });
    let empty = Map::new();
    for (name, property) in schema["properties"].as_object().unwrap_or(&empty) {
        let property = resolved(doc, property);
        let kind = property["type"].as_str().unwrap_or("");
        if ["integer", "number", "string", "boolean", "array"].contains(&kind) {
            probes.push(body(format!("a wrong type for {name}"), json!({ name: { "x": [] } })));
        }
        if kind == "string" {
            probes.push(body(format!("a NUL byte in {name}"), json!({ name: "a\u{0}b" })));
        }
        if kind == "integer" {
            probes.push(body(format!("a huge number for {name}"), json!({ name: 1e300 })));
            if let Some(min) = property["minimum"].as_i64() {
                probes.push(body(format!("{name} below its minimum"), json!({ name: min - 1 })));
            }
        }
    }
    probes
}

#[test]
fn every_api_operation_refuses_hostile_input_with_a_json_4xx_and_writes_nothing() {
    with_db(|db| async move {
        let app = spawn_app(db).await;
        let token = app.token_for("ada").await;
        let doc: Value =
            client().get(app.url("/api/openapi.json")).send().await.unwrap().json().await.unwrap();
        let before = row_counts(&app).await;
        let mut wrong = Vec::new();
        let mut tried = 0;
        for (path, operations) in doc["paths"].as_object().unwrap() {
            for (method, op) in operations.as_object().unwrap() {
                let Ok(method) = method.to_uppercase().parse::<Method>() else { continue };
                for probe in probes(&doc, path, op) {
                    tried += 1;
                    let mut request =
                        client().request(method.clone(), app.url(&probe.path)).bearer_auth(&token);
                    if let Some(body) = probe.body {
                        request = request.header("content-type", "application/json").body(body);
                    }
                    let response = request.send().await.unwrap();
                    let status = response.status();
                    let json = response
                        .headers()
                        .get("content-type")
                        .is_some_and(|c| c.to_str().unwrap_or("").starts_with("application/json"));
                    let text = response.text().await.unwrap_or_default();
                    let named =
                        serde_json::from_str::<Value>(&text).is_ok_and(|v| v["error"]["message"].is_string());
                    if !status.is_client_error() || !json || !named {
                        wrong.push(format!(
                            "{method} {} ({}): {status} {}",
                            probe.path,
                            probe.what,
                            text.chars().take(120).collect::<String>()
                        ));
                    }
                }
            }
        }
        assert!(tried > 200, "only {tried} probes");
        assert!(
            wrong.is_empty(),
            "{} of {tried} hostile requests were not a JSON 4xx:\n{}",
            wrong.len(),
            wrong.join("\n")
        );
        assert_eq!(row_counts(&app).await, before, "a hostile request wrote rows");
    });
}
