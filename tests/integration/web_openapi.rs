//! The OpenAPI document at `/api/openapi.json`: served without login, well formed, and in
//! step with the app — every documented operation is a live route that answers only the
//! statuses documented for it (with bodies matching their schemas), and every `/api`
//! route of the app is documented.

use std::collections::BTreeSet;

use ::registry::artifacts::ArtifactStore;
use ::registry::runs::{NewRun, RunKind};
use ::registry::versions::{self, ModelKind, NewVersion, Parent};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::db::with_db;
use crate::web_app::{client, spawn_app, TestApp};

/// The JSON API's routes as the app registers them, read off `web/src/routes/` (the
/// `#[get("/api/…")]`-style attributes and the `.route("/api/…", web::get()…)` calls in
/// `annotate.rs`; `{tag:.*}` written `{tag}`). Adding a route means adding it here and to
/// the document; [`the_route_list_is_the_one_in_the_source`] keeps this list honest.
const API_ROUTES: &[(&str, &str)] = &[
    // projects.rs
    ("GET", "/api/projects"),
    ("POST", "/api/projects"),
    // project.rs
    ("GET", "/api/projects/{id}"),
    ("PUT", "/api/projects/{id}"),
    ("POST", "/api/projects/{id}/members"),
    ("DELETE", "/api/projects/{id}/members/{username}"),
    // prompts.rs
    ("GET", "/api/projects/{id}/prompts"),
    ("POST", "/api/projects/{id}/prompts"),
    // imports.rs
    ("POST", "/api/projects/{id}/imports"),
    ("GET", "/api/projects/{id}/imports"),
    ("POST", "/api/projects/{id}/demonstration-tasks"),
    // annotate.rs
    ("GET", "/api/me/projects"),
    ("POST", "/api/projects/{id}/tasks/next"),
    ("GET", "/api/assignments/{id}"),
    ("POST", "/api/assignments/{id}/skip"),
    ("POST", "/api/assignments/{id}/demonstration"),
    ("POST", "/api/assignments/{id}/ranking"),
    ("POST", "/api/assignments/{id}/vote"),
    ("GET", "/api/me/history"),
    ("GET", "/api/me/agreement"),
    // data.rs
    ("GET", "/api/snapshots/{id}/export"),
    ("GET", "/api/projects/{id}/data"),
    ("GET", "/api/projects/{id}/consensus"),
    ("GET", "/api/projects/{id}/snapshots"),
    ("POST", "/api/projects/{id}/snapshots"),
    // models.rs
    ("GET", "/api/models"),
    ("GET", "/api/models/{name}"),
    ("GET", "/api/models/{name}/versions/{n}"),
    ("PUT", "/api/models/{name}/aliases/{alias}"),
    ("DELETE", "/api/models/{name}/aliases/{alias}"),
    ("POST", "/api/models/{name}/versions/{n}/tags"),
    ("DELETE", "/api/models/{name}/versions/{n}/tags/{tag}"),
    ("GET", "/api/models/{name}/versions/{n}/files"),
    ("GET", "/api/models/{name}/versions/{n}/files/{path}"),
    // runs.rs
    ("GET", "/api/runs"),
    ("POST", "/api/runs"),
    ("GET", "/api/run-defaults/{kind}"),
    ("GET", "/api/runs/{id}"),
    ("PATCH", "/api/runs/{id}"),
    ("GET", "/api/runs/{id}/metrics"),
    ("GET", "/api/runs/{id}/logs"),
    ("POST", "/api/runs/{id}/cancel"),
    // compare.rs
    ("GET", "/api/compare"),
    // evals.rs
    ("GET", "/api/evals/{id}"),
    ("POST", "/api/evals/{id}/ab-batches"),
    ("POST", "/api/evals/{id}/ranking-tasks"),
    // admin.rs
    ("GET", "/api/admin/users"),
    ("POST", "/api/admin/users"),
    ("POST", "/api/admin/users/{id}/disable"),
    ("POST", "/api/admin/users/{id}/enable"),
    ("PUT", "/api/admin/users/{id}/role"),
    ("POST", "/api/admin/users/{id}/password"),
    ("GET", "/api/admin/audit"),
    // tokens.rs
    ("GET", "/api/tokens"),
    ("POST", "/api/tokens"),
    ("DELETE", "/api/tokens/{id}"),
    // api_doc.rs
    ("GET", "/api/openapi.json"),
];

const METHODS: [&str; 5] = ["get", "post", "put", "patch", "delete"];

async fn document(app: &TestApp) -> Value {
    let response = client().get(app.url("/api/openapi.json")).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    response.json().await.unwrap()
}

/// Every (method, path, operation) of the document, methods in capitals.
fn operations(doc: &Value) -> Vec<(String, String, Value)> {
    let mut ops = Vec::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for (method, op) in item.as_object().expect("a path item") {
            assert!(METHODS.contains(&method.as_str()), "{path}: unexpected key {method}");
            ops.push((method.to_uppercase(), path.clone(), op.clone()));
        }
    }
    ops
}

/// What a `$ref` points at (`#/components/...`), if it is inside the document.
fn resolve<'a>(doc: &'a Value, reference: &str) -> Option<&'a Value> {
    doc.pointer(reference.strip_prefix('#')?)
}

/// Every `$ref` in `value`, with where it was found.
fn refs(value: &Value, at: &str, found: &mut Vec<(String, String)>) {
    match value {
        Value::Object(o) => {
            for (k, v) in o {
                if k == "$ref" {
                    found.push((at.to_string(), v.as_str().expect("a $ref is a string").to_string()));
                } else {
                    refs(v, &format!("{at}/{k}"), found);
                }
            }
        }
        Value::Array(a) => a.iter().enumerate().for_each(|(i, v)| refs(v, &format!("{at}/{i}"), found)),
        _ => {}
    }
}

/// The `{name}`s of a path template.
fn template_names(path: &str) -> BTreeSet<String> {
    path.split('{').skip(1).map(|s| s.split('}').next().unwrap().to_string()).collect()
}

/// Why `value` does not match `schema`, loosely: `$ref`, `allOf`/`anyOf`/`oneOf` (at
/// least one), `type`, `enum`, `required`, `properties`, `additionalProperties`,
/// `items` and `prefixItems`; bounds and formats are not checked. An object schema with
/// `properties` is closed: a field it does not list is a mismatch, so that a field added
/// or renamed in the code shows up here.
fn mismatches(doc: &Value, value: &Value, schema: &Value, at: &str) -> Vec<String> {
    check(doc, value, schema, at, true)
}

/// The property names of an object schema, through `$ref` and `allOf`.
fn property_names(doc: &Value, schema: &Value) -> BTreeSet<String> {
    if let Some(reference) = schema.get("$ref").and_then(Value::as_str) {
        return property_names(doc, resolve(doc, reference).unwrap());
    }
    let mut names: BTreeSet<String> = schema
        .get("properties")
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
        .map(|(k, _)| k.clone())
        .collect();
    for part in schema.get("allOf").and_then(Value::as_array).into_iter().flatten() {
        names.extend(property_names(doc, part));
    }
    names
}

/// [`mismatches`]; `closed` is false for the parts of an `allOf`, whose fields are
/// checked against the union of the parts' properties instead.
fn check(doc: &Value, value: &Value, schema: &Value, at: &str, closed: bool) -> Vec<String> {
    if let Some(reference) = schema.get("$ref").and_then(Value::as_str) {
        let target = resolve(doc, reference).unwrap_or_else(|| panic!("{reference} does not resolve"));
        return check(doc, value, target, at, closed);
    }
    let mut problems = Vec::new();
    if let Some(all) = schema.get("allOf").and_then(Value::as_array) {
        for s in all {
            problems.extend(check(doc, value, s, at, false));
        }
    }
    for key in ["anyOf", "oneOf"] {
        if let Some(any) = schema.get(key).and_then(Value::as_array) {
            if any.iter().all(|s| !check(doc, value, s, at, closed).is_empty()) {
                problems.push(format!("{at}: {value} matches none of {key}"));
            }
        }
    }
    if let Some(types) = schema.get("type") {
        let types: Vec<&str> = match types {
            Value::String(t) => vec![t.as_str()],
            Value::Array(ts) => ts.iter().filter_map(Value::as_str).collect(),
            other => panic!("{at}: a type of {other}"),
        };
        let fits = |t: &str| match t {
            "null" => value.is_null(),
            "boolean" => value.is_boolean(),
            "integer" => value.is_i64() || value.is_u64(),
            "number" => value.is_number(),
            "string" => value.is_string(),
            "array" => value.is_array(),
            "object" => value.is_object(),
            other => panic!("{at}: the type {other}"),
        };
        if !types.iter().any(|t| fits(t)) {
            return vec![format!("{at}: {value} is not of type {types:?}")];
        }
    }
    if let Some(options) = schema.get("enum").and_then(Value::as_array) {
        if !options.contains(value) {
            problems.push(format!("{at}: {value} is not one of {options:?}"));
        }
    }
    if let Value::Object(o) = value {
        for name in schema.get("required").and_then(Value::as_array).into_iter().flatten() {
            let name = name.as_str().unwrap();
            if !o.contains_key(name) {
                problems.push(format!("{at}: the required field {name} is missing from {value}"));
            }
        }
        let properties = schema.get("properties").and_then(Value::as_object);
        let additional = schema.get("additionalProperties");
        for (k, v) in o {
            match (properties.and_then(|p| p.get(k)), additional) {
                (Some(s), _) => problems.extend(check(doc, v, s, &format!("{at}.{k}"), true)),
                (None, Some(s)) if s.is_object() => {
                    problems.extend(check(doc, v, s, &format!("{at}.{k}"), true))
                }
                _ => {}
            }
        }
        let listed = property_names(doc, schema);
        if closed && additional.is_none() && !listed.is_empty() {
            for k in o.keys().filter(|k| !listed.contains(*k)) {
                problems.push(format!("{at}: the field {k} is not in the schema"));
            }
        }
    }
    if let Value::Array(items) = value {
        let prefix = schema.get("prefixItems").and_then(Value::as_array);
        for (i, item) in items.iter().enumerate() {
            let s = prefix.and_then(|p| p.get(i)).or_else(|| schema.get("items"));
            if let Some(s) = s {
                problems.extend(check(doc, item, s, &format!("{at}[{i}]"), true));
            }
        }
    }
    problems
}

/// The response documented for `status` (a `$ref` followed), if any.
fn documented<'a>(doc: &'a Value, op: &'a Value, status: StatusCode) -> Option<&'a Value> {
    let response = op["responses"].get(status.as_str())?;
    match response.get("$ref").and_then(Value::as_str) {
        Some(reference) => resolve(doc, reference),
        None => Some(response),
    }
}

/// What the operation's route answered, checked against the document: a documented
/// status, a documented content type, and a JSON body matching its schema.
async fn check_response(
    doc: &Value,
    what: &str,
    op: &Value,
    response: reqwest::Response,
) -> (StatusCode, Value) {
    let status = response.status();
    let content_type =
        response.headers().get("content-type").map(|v| v.to_str().unwrap().to_string()).unwrap_or_default();
    let bytes = response.bytes().await.unwrap();
    let body: Value = if content_type.starts_with("application/json") {
        serde_json::from_slice(&bytes).unwrap_or_else(|e| panic!("{what}: {status} with bad JSON: {e}"))
    } else {
        Value::Null
    };
    let response = documented(doc, op, status)
        .unwrap_or_else(|| panic!("{what} answered {status}, which it does not document: {body}"));
    if let Some(content) = response.get("content").and_then(Value::as_object) {
        let (media_type, media) = content
            .iter()
            .find(|(media_type, _)| content_type.starts_with(media_type.as_str()))
            .unwrap_or_else(|| panic!("{what}: {status} as {content_type:?}, documented as {content:?}"));
        if media_type == "application/json" {
            let problems = mismatches(doc, &body, &media["schema"], "body");
            assert!(problems.is_empty(), "{what} ({status}) does not match its schema: {problems:#?}");
        }
    }
    (status, body)
}

/// What the drift test calls the routes with.
struct Fixtures {
    project: i64,
    assignment: i64,
    snapshot: i64,
    run: i64,
    versions: [i64; 2],
}

impl Fixtures {
    /// The value of a path parameter of `path`.
    fn path_value(&self, path: &str, name: &str) -> String {
        match name {
            "id" if path.starts_with("/api/projects/") => self.project.to_string(),
            "id" if path.starts_with("/api/assignments/") => self.assignment.to_string(),
            "id" if path.starts_with("/api/snapshots/") => self.snapshot.to_string(),
            "id" if path.starts_with("/api/runs/") || path.starts_with("/api/evals/") => self.run.to_string(),
            // The researcher the operations run as is refused before the user is looked up.
            "id" if path.starts_with("/api/admin/users/") => "1".into(),
            // No such token: revoking the caller's own would end the test's token.
            "id" if path.starts_with("/api/tokens/") => "999999".into(),
            "name" => "tiny".into(),
            "n" => "1".into(),
            "path" => "config.json".into(),
            "tag" => "best".into(),
            "alias" => "champion".into(),
            "kind" => "sft".into(),
            "username" => "ann".into(),
            other => panic!("no test value for the parameter {other} of {path}: add one"),
        }
    }

    /// The query string for the operation's required query parameters.
    fn query(&self, op: &Value) -> String {
        let mut pairs = Vec::new();
        for p in op["parameters"].as_array().into_iter().flatten() {
            if p["in"] != "query" || p["required"] != true {
                continue;
            }
            match p["name"].as_str().unwrap() {
                "v" => pairs.extend(self.versions.iter().map(|id| format!("v={id}"))),
                name => {
                    let example = p["example"].as_str().unwrap_or_else(|| panic!("no example for {name}"));
                    pairs.push(format!("{name}={example}"));
                }
            }
        }
        if pairs.is_empty() {
            String::new()
        } else {
            format!("?{}", pairs.join("&"))
        }
    }

    fn url(&self, path: &str, op: &Value) -> String {
        let mut url = path.to_string();
        for name in template_names(path) {
            url = url.replace(&format!("{{{name}}}"), &self.path_value(path, &name));
        }
        url + &self.query(op)
    }
}

/// A request as a token caller sends it; `{}` for the operations that take a body.
async fn send(app: &TestApp, token: Option<&str>, method: &str, url: &str, op: &Value) -> reqwest::Response {
    let mut request = client().request(Method::from_bytes(method.as_bytes()).unwrap(), app.url(url));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    if op.get("requestBody").is_some() {
        request = request.json(&json!({}));
    }
    request.send().await.unwrap()
}

/// A researcher's call with a real body, checked against the document.
async fn call(
    app: &TestApp,
    doc: &Value,
    token: &str,
    method: &str,
    path: &str,
    url: &str,
    body: Value,
) -> (StatusCode, Value) {
    let op = &doc["paths"][path][method.to_lowercase()];
    assert!(op.is_object(), "{method} {path} is not documented");
    let request = client()
        .request(Method::from_bytes(method.as_bytes()).unwrap(), app.url(url))
        .bearer_auth(token)
        .json(&body);
    check_response(doc, &format!("{method} {url}"), op, request.send().await.unwrap()).await
}

async fn register(app: &TestApp, seed: u8, parents: Vec<Parent>) -> i64 {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("config.json"), format!("{{\"n_layer\": {seed}}}")).unwrap();
    let artifact = ArtifactStore::new(app.artifacts.path()).unwrap().put_dir(dir.path()).unwrap();
    let new = NewVersion {
        model: "tiny".into(),
        kind: ModelKind::Base,
        run_id: None,
        parents,
        snapshots: Vec::new(),
        config: json!({ "lr": 0.001 * f64::from(seed) }),
        metrics: json!({ "val/loss": 2.0 / f64::from(seed) }),
        artifact,
        created_by: None,
    };
    versions::register(&app.db.pool, &new).await.unwrap().id
}

/// A project with two prompts, ann as its annotator, a demonstration task leased to
/// rita, a prompts snapshot, two versions of `tiny` (tagged and aliased) and a queued
/// run; made through the API where it can be, so those answers are checked too.
async fn fixtures(app: &TestApp, doc: &Value, token: &str) -> Fixtures {
    let (status, project) =
        call(app, doc, token, "POST", "/api/projects", "/api/projects", json!({"name": "openapi"})).await;
    assert_eq!(status, StatusCode::CREATED, "{project}");
    let project = project["id"].as_i64().unwrap();
    let prompts = format!("/api/projects/{project}/prompts");
    let data = "{\"prompt\": \"hello\"}\n{\"prompt\": \"world\", \"split\": \"val\"}\n";
    let (status, report) = call(
        app,
        doc,
        token,
        "POST",
        "/api/projects/{id}/prompts",
        &prompts,
        json!({"format": "jsonl", "data": data}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{report}");
    let prompt = report["imported"][0]["prompt_id"].as_i64().unwrap();
    let members = format!("/api/projects/{project}/members");
    let (status, _) =
        call(app, doc, token, "POST", "/api/projects/{id}/members", &members, json!({"username": "ann"}))
            .await;
    assert_eq!(status, StatusCode::CREATED);
    labeling::tasks::create_demonstration_tasks(&app.db.pool, project, &[prompt]).await.unwrap();
    let next = format!("/api/projects/{project}/tasks/next");
    let (status, assignment) =
        call(app, doc, token, "POST", "/api/projects/{id}/tasks/next", &next, json!({})).await;
    assert_eq!(status, StatusCode::OK, "{assignment}");
    let snapshots = format!("/api/projects/{project}/snapshots");
    let (status, snapshot) = call(
        app,
        doc,
        token,
        "POST",
        "/api/projects/{id}/snapshots",
        &snapshots,
        json!({"kind": "prompts", "name": "all prompts"}),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{snapshot}");
    let first = register(app, 1, Vec::new()).await;
    let second = register(app, 2, vec![Parent { version_id: first, role: "base".into() }]).await;
    let tags = "/api/models/tiny/versions/1/tags";
    let (status, _) =
        call(app, doc, token, "POST", "/api/models/{name}/versions/{n}/tags", tags, json!({"tag": "best"}))
            .await;
    assert_eq!(status, StatusCode::OK);
    let alias = "/api/models/tiny/aliases/champion";
    let (status, _) =
        call(app, doc, token, "PUT", "/api/models/{name}/aliases/{alias}", alias, json!({"version": 1}))
            .await;
    assert_eq!(status, StatusCode::OK);
    let new = NewRun { project_id: Some(project), kind: RunKind::Sft, config: json!({}), created_by: None };
    let run = ::registry::runs::enqueue(&app.db.pool, &new).await.unwrap();
    Fixtures {
        project,
        assignment: assignment["assignment_id"].as_i64().unwrap(),
        snapshot: snapshot["id"].as_i64().unwrap(),
        run,
        versions: [first, second],
    }
}

#[test]
fn the_document_is_served_without_login_as_openapi_3_1_json() {
    with_db(|db| async move {
        let app = spawn_app(db).await;
        let response = client().get(app.url("/api/openapi.json")).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        let header = |name: &str| response.headers().get(name).map(|v| v.to_str().unwrap().to_string());
        assert!(header("content-type").unwrap().starts_with("application/json"));
        assert!(header("cache-control").unwrap().contains("max-age"));
        let doc: Value = response.json().await.unwrap();
        assert!(doc["openapi"].as_str().unwrap().starts_with("3.1."), "{}", doc["openapi"]);
        assert_eq!(doc["info"]["title"], "plumb");
        assert!(!doc["info"]["version"].as_str().unwrap().is_empty());
        let schemes = &doc["components"]["securitySchemes"];
        assert_eq!(schemes["bearer"]["scheme"], "bearer");
        assert_eq!(schemes["session"]["in"], "cookie");
        assert_eq!(schemes["session"]["name"], "plumb_session");
        assert!(schemes["session"]["description"].as_str().unwrap().contains("X-CSRF-Token"));

        let ops = operations(&doc);
        assert!(ops.len() >= 40, "{} operations", ops.len());
        let mut ids = BTreeSet::new();
        for (method, path, op) in &ops {
            let what = format!("{method} {path}");
            assert!(!op["summary"].as_str().unwrap_or_default().is_empty(), "{what} has no summary");
            assert!(ids.insert(op["operationId"].as_str().unwrap().to_string()), "{what}: operationId again");
            let responses = op["responses"].as_object().unwrap_or_else(|| panic!("{what} has no responses"));
            assert!(responses.keys().any(|s| s.starts_with('2')), "{what} has no success response");
            let role = op["x-plumb-role"].as_str().unwrap_or_else(|| panic!("{what} names no role"));
            assert!(["public", "logged-in", "researcher", "admin"].contains(&role), "{what}: role {role}");
            if role != "public" {
                assert!(responses.contains_key("401"), "{what} documents no 401");
            }
            // The path's `{names}` are exactly its path parameters.
            let declared: BTreeSet<String> = op["parameters"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|p| p["in"] == "path")
                .map(|p| p["name"].as_str().unwrap().to_string())
                .collect();
            assert_eq!(declared, template_names(path), "{what}: path parameters");
        }
        // Only the document itself is public.
        let public: Vec<&String> =
            ops.iter().filter(|(_, _, op)| op["security"] == json!([])).map(|(_, p, _)| p).collect();
        assert_eq!(public, ["/api/openapi.json"]);

        // Every object schema lists the fields it requires.
        for (name, schema) in doc["components"]["schemas"].as_object().unwrap() {
            let mut objects = vec![schema];
            while let Some(s) = objects.pop() {
                if let Some(required) = s.get("required").and_then(Value::as_array) {
                    let listed = property_names(&doc, s);
                    for field in required {
                        assert!(
                            listed.contains(field.as_str().unwrap()),
                            "{name}: {field} is required, not listed"
                        );
                    }
                }
                match s {
                    Value::Object(o) => objects.extend(o.values()),
                    Value::Array(a) => objects.extend(a.iter()),
                    _ => {}
                }
            }
        }

        let mut found = Vec::new();
        refs(&doc, "", &mut found);
        assert!(found.len() > 100, "{} $refs", found.len());
        for (at, reference) in found {
            assert!(resolve(&doc, &reference).is_some(), "{at}: {reference} does not resolve");
        }
    });
}

#[test]
fn the_documented_routes_are_exactly_the_apps_api_routes() {
    with_db(|db| async move {
        let app = spawn_app(db).await;
        let doc = document(&app).await;
        let documented: BTreeSet<(String, String)> =
            operations(&doc).into_iter().map(|(m, p, _)| (m, p)).collect();
        let routes: BTreeSet<(String, String)> =
            API_ROUTES.iter().map(|(m, p)| (m.to_string(), p.to_string())).collect();
        assert_eq!(API_ROUTES.len(), routes.len(), "a route listed twice");
        let undocumented: Vec<_> = routes.difference(&documented).collect();
        let not_routes: Vec<_> = documented.difference(&routes).collect();
        assert!(undocumented.is_empty(), "routes missing from the document: {undocumented:?}");
        assert!(not_routes.is_empty(), "documented operations that are no routes: {not_routes:?}");
    });
}

/// The `/api` routes declared in `web/src/routes/**/*.rs`: route attributes
/// (`#[get("/api/…")]`) and `.route("/api/…", web::get()…)` calls.
fn routes_in_source() -> BTreeSet<(String, String)> {
    fn walk(dir: &std::path::Path, files: &mut Vec<std::path::PathBuf>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(&path, files);
            } else if path.extension().is_some_and(|e| e == "rs") {
                files.push(path);
            }
        }
    }
    // `{tag:.*}` → `{tag}`.
    let template = |path: &str| -> String {
        let segments = path.split('/').map(|segment| match segment.strip_prefix('{') {
            Some(inner) => format!("{{{}}}", inner.trim_end_matches('}').split(':').next().unwrap()),
            None => segment.to_string(),
        });
        segments.collect::<Vec<_>>().join("/")
    };
    let mut files = Vec::new();
    walk(&std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("web/src/routes"), &mut files);
    let mut routes = BTreeSet::new();
    for file in files {
        let source = std::fs::read_to_string(&file).unwrap();
        for method in METHODS {
            for (i, _) in source.match_indices(&format!("#[{method}(\"/api/")) {
                let rest = &source[i + method.len() + 4..];
                routes.insert((method.to_uppercase(), template(&rest[..rest.find('"').unwrap()])));
            }
        }
        for (i, _) in source.match_indices(".route(\"/api/") {
            let rest = &source[i + 8..];
            let path = &rest[..rest.find('"').unwrap()];
            let after = &rest[path.len()..];
            let method = METHODS
                .iter()
                .find(|m| after.trim_start_matches(['"', ',', ' ', '\n']).starts_with(&format!("web::{m}()")))
                .unwrap_or_else(|| panic!("{}: cannot tell the method of {path}", file.display()));
            routes.insert((method.to_uppercase(), template(path)));
        }
    }
    routes
}

#[test]
fn the_route_list_is_the_one_in_the_source() {
    let listed: BTreeSet<(String, String)> =
        API_ROUTES.iter().map(|(m, p)| (m.to_string(), p.to_string())).collect();
    assert_eq!(routes_in_source(), listed, "web/src/routes declares other /api routes than API_ROUTES lists");
}

#[test]
fn every_documented_operation_is_a_live_route_answering_only_documented_statuses() {
    with_db(|db| async move {
        let app = spawn_app(db).await;
        let doc = document(&app).await;
        let token = app.token_for("rita").await;
        let fixtures = fixtures(&app, &doc, &token).await;
        let mut successes = 0;
        for (method, path, op) in operations(&doc) {
            let url = fixtures.url(&path, &op);
            let what = format!("{method} {url}");
            let response = send(&app, Some(&token), &method, &url, &op).await;
            let (status, body) = check_response(&doc, &what, &op, response).await;
            assert_ne!(status, StatusCode::METHOD_NOT_ALLOWED, "{what}");
            if status == StatusCode::NOT_FOUND {
                let message = body["error"]["message"].as_str().unwrap_or_default();
                assert!(!message.contains("no page at"), "{what}: no such route");
            }
            if status.is_success() {
                successes += 1;
            }
        }
        // Most operations succeed on the fixtures, so their bodies were checked too.
        assert!(successes >= 25, "only {successes} operations succeeded");
    });
}

#[test]
fn the_roles_are_as_documented_for_every_operation_and_role() {
    with_db(|db| async move {
        let app = spawn_app(db).await;
        let doc = document(&app).await;
        let rita = app.token_for("rita").await;
        let ann = app.token_for("ann").await;
        let ada = app.token_for("ada").await;
        let fixtures = fixtures(&app, &doc, &rita).await;
        // Ann's own projects are hers to work in (before the researcher's calls below
        // change the fixtures, a member's removal among them).
        let response = client().get(app.url("/api/me/projects")).bearer_auth(&ann).send().await.unwrap();
        let projects: Value = response.json().await.unwrap();
        assert_eq!(projects[0]["id"], fixtures.project);
        for (method, path, op) in operations(&doc) {
            let url = fixtures.url(&path, &op);
            let what = format!("{method} {url}");
            let role = op["x-plumb-role"].as_str().unwrap().to_string();
            // Logged out.
            let response = send(&app, None, &method, &url, &op).await;
            let (status, _) = check_response(&doc, &format!("{what} logged out"), &op, response).await;
            match role.as_str() {
                "public" => assert_eq!(status, StatusCode::OK, "{what}"),
                _ => assert_eq!(status, StatusCode::UNAUTHORIZED, "{what} logged out"),
            }
            // An annotator: refused researchers' routes (a body that cannot be read may
            // be refused first).
            let response = send(&app, Some(&ann), &method, &url, &op).await;
            let (status, body) = check_response(&doc, &format!("{what} as ann"), &op, response).await;
            match role.as_str() {
                "researcher" | "admin" => {
                    let unreadable = op.get("requestBody").is_some() && status == StatusCode::BAD_REQUEST;
                    assert!(status == StatusCode::FORBIDDEN || unreadable, "{what} as ann: {status} {body}");
                }
                _ => assert_ne!(status, StatusCode::UNAUTHORIZED, "{what} as ann"),
            }
            // A researcher: refused the admin's routes, admitted to the others.
            let response = send(&app, Some(&rita), &method, &url, &op).await;
            let (status, body) = check_response(&doc, &format!("{what} as rita"), &op, response).await;
            match role.as_str() {
                "admin" => {
                    let unreadable = op.get("requestBody").is_some() && status == StatusCode::BAD_REQUEST;
                    assert!(status == StatusCode::FORBIDDEN || unreadable, "{what} as rita: {status} {body}");
                }
                // What only a browser session may do (making a token) refuses any token.
                _ if op.to_string().contains("session") && body.to_string().contains("logged-in session") => {
                    assert_eq!(status, StatusCode::FORBIDDEN, "{what} as rita")
                }
                _ => assert!(
                    ![StatusCode::UNAUTHORIZED, StatusCode::FORBIDDEN].contains(&status),
                    "{what} as rita: {status} {body}"
                ),
            }
            // An admin is admitted to the admin's routes: a read answers, and a change
            // sent with a field no route takes is refused for its body, not for who sent it
            // (so that the walk changes no user).
            if role == "admin" {
                let request = client().request(method.parse().unwrap(), app.url(&url)).bearer_auth(&ada);
                let request = if method == "GET" { request } else { request.json(&json!({ "zz_probe": 1 })) };
                let status = request.send().await.unwrap().status();
                let admitted = if method == "GET" {
                    status == StatusCode::OK
                } else {
                    status.as_u16() == 400 || status.as_u16() == 422
                };
                assert!(admitted, "{what} as ada: {status}");
            }
        }
    });
}

#[test]
fn bodies_match_their_schemas() {
    with_db(|db| async move {
        let app = spawn_app(db).await;
        let doc = document(&app).await;
        let token = app.token_for("rita").await;
        fixtures(&app, &doc, &token).await;

        // Every project has every field the Project schema requires.
        let projects: Value = client()
            .get(app.url("/api/projects"))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let projects = projects.as_array().unwrap();
        assert_eq!(projects.len(), 1);
        let project_schema = &doc["components"]["schemas"]["Project"];
        for field in project_schema["required"].as_array().unwrap() {
            assert!(projects[0].get(field.as_str().unwrap()).is_some(), "a project without {field}");
        }
        let problems = mismatches(&doc, &projects[0], project_schema, "project");
        assert!(problems.is_empty(), "{problems:#?}");

        // A launch for a missing project: a 404 shaped as Error; a config with a problem:
        // a 422 naming its field.
        let body = json!({"project_id": 999999, "kind": "sft", "config": {}});
        let (status, error) = call(&app, &doc, &token, "POST", "/api/runs", "/api/runs", body).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        assert_eq!(error["error"]["status"], 404);
        assert!(mismatches(&doc, &error, &doc["components"]["schemas"]["Error"], "error").is_empty());
        let body = json!({"project_id": projects[0]["id"], "kind": "sft", "config": {}});
        let (status, error) = call(&app, &doc, &token, "POST", "/api/runs", "/api/runs", body).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(error["error"]["field"], "model_name");
        assert_eq!(error["error"]["status"], 422);
        assert!(mismatches(&doc, &error, &doc["components"]["schemas"]["Error"], "error").is_empty());

        // The loose check does catch a body that breaks its schema.
        let mut broken = projects[0].clone();
        broken["overlap"] = json!("two");
        broken.as_object_mut().unwrap().remove("name");
        broken["title"] = json!("renamed");
        assert_eq!(mismatches(&doc, &broken, project_schema, "project").len(), 3, "{broken}");
        assert!(!mismatches(
            &doc,
            &json!({"error": {"status": 422}}),
            &doc["components"]["schemas"]["Error"],
            "e"
        )
        .is_empty());
    });
}
