//! `GET /api/openapi.json`: served without a session, parses, lists every
//! route of the contract with its responses and security, states the
//! contract's limits, and names no route the server does not have.

use reqwest::{Method, StatusCode};
use serde_json::Value;

use crate::helpers::spawn_app;

/// Every route of the contract (and the README's additions): method, path,
/// needs a session, the statuses it must document.
const CONTRACT: &[(&str, &str, bool, &[u16])] = &[
    ("post", "/api/signup", false, &[201, 400, 409, 413, 415]),
    ("post", "/api/login", false, &[200, 400, 401, 413, 415, 429]),
    ("post", "/api/logout", true, &[204, 401]),
    ("get", "/api/me", true, &[200, 401]),
    ("get", "/api/users", true, &[200, 401]),
    ("post", "/api/work-items", true, &[201, 400, 401, 413, 415, 503]),
    ("get", "/api/work-items/{id}", true, &[200, 400, 401, 404, 503]),
    ("patch", "/api/work-items/{id}", true, &[200, 400, 401, 404, 413, 415, 503]),
    ("delete", "/api/work-items/{id}", true, &[204, 400, 401, 404, 503]),
    ("get", "/api/calendar/feed", true, &[200, 400, 401, 503]),
    ("get", "/api/calendar/changes", true, &[200, 400, 401, 429, 503]),
    ("get", "/healthz", false, &[200]),
    ("get", "/readyz", false, &[200, 503]),
    ("get", "/metrics", false, &[200]),
    ("get", "/api/openapi.json", false, &[200]),
];

async fn document(app: &crate::helpers::TestApp) -> Value {
    let res = app.get("/api/openapi.json", None).await;
    assert_eq!(res.status(), StatusCode::OK);
    let ct = res.headers().get("content-type").and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
    assert!(ct.starts_with("application/json"), "{ct}");
    res.json().await.expect("the document is JSON")
}

/// Follows a local `$ref` (`#/components/schemas/X`).
fn resolve<'a>(doc: &'a Value, schema: &'a Value) -> &'a Value {
    match schema["$ref"].as_str() {
        Some(r) => doc.pointer(r.trim_start_matches('#')).unwrap_or_else(|| panic!("dangling $ref {r}")),
        None => schema,
    }
}

fn component<'a>(doc: &'a Value, name: &str) -> &'a Value {
    doc.pointer(&format!("/components/schemas/{name}")).unwrap_or_else(|| panic!("no schema {name}"))
}

fn property<'a>(doc: &'a Value, schema: &str, field: &str) -> &'a Value {
    let prop = &component(doc, schema)["properties"][field];
    assert!(!prop.is_null(), "{schema}.{field} is missing");
    // Optional fields are `oneOf: [null, T]` in OpenAPI 3.1.
    if let Some(branches) = prop["oneOf"].as_array() {
        let t = branches.iter().find(|b| b["type"] != "null").expect("a non-null branch");
        return resolve(doc, t);
    }
    resolve(doc, prop)
}

#[tokio::test]
async fn document_is_served_and_lists_every_route_of_the_contract() {
    let app = spawn_app().await;
    let doc = document(&app).await;
    assert!(doc["openapi"].as_str().is_some_and(|v| v.starts_with("3.")), "{}", doc["openapi"]);

    let schemes = &doc["components"]["securitySchemes"];
    assert_eq!(schemes["bearer"]["type"], "http");
    assert_eq!(schemes["bearer"]["scheme"], "bearer");
    assert_eq!(schemes["session_cookie"]["in"], "cookie");
    assert_eq!(schemes["session_cookie"]["name"], "session");

    let mut documented = 0;
    for (method, path, protected, statuses) in CONTRACT {
        let op = doc["paths"][path][method].clone();
        assert!(op.is_object(), "{method} {path} is not documented");
        let security = op["security"].as_array().cloned().unwrap_or_default();
        let names: Vec<&str> = security
            .iter()
            .flat_map(|r| r.as_object().into_iter().flat_map(|o| o.keys()))
            .map(String::as_str)
            .collect();
        if *protected {
            assert!(names.contains(&"bearer") && names.contains(&"session_cookie"), "{method} {path}: {security:?}");
        } else {
            assert!(names.is_empty(), "{method} {path} should need no session: {security:?}");
        }
        for status in *statuses {
            let response = &op["responses"][status.to_string()];
            assert!(response.is_object(), "{method} {path} does not document {status}");
            if *status >= 400 {
                let schema = &response["content"]["application/json"]["schema"]["$ref"];
                assert_eq!(schema, "#/components/schemas/ErrorBody", "{method} {path} {status}");
            }
        }
        documented += 1;
    }
    let all: usize = doc["paths"].as_object().unwrap().values().map(|item| item.as_object().unwrap().len()).sum();
    assert_eq!(all, documented, "the document lists routes the contract test does not know");

    // The feed's query: start and end required, filters optional.
    let params = doc["paths"]["/api/calendar/feed"]["get"]["parameters"].as_array().unwrap();
    let param = |name: &str| params.iter().find(|p| p["name"] == name).unwrap_or_else(|| panic!("no {name}"));
    assert_eq!(param("start")["required"], true);
    assert_eq!(param("end")["required"], true);
    assert_eq!(param("work_type")["required"], false);
    assert_eq!(param("status")["required"], false);
    assert!(param("timeZone").is_object());
}

#[tokio::test]
async fn document_states_the_contracts_limits() {
    let app = spawn_app().await;
    let doc = document(&app).await;

    let title = property(&doc, "CreateWorkItem", "title");
    assert_eq!((title["minLength"].as_u64(), title["maxLength"].as_u64()), (Some(1), Some(200)));
    let description = property(&doc, "CreateWorkItem", "description");
    assert_eq!(description["maxLength"].as_u64(), Some(10_000));
    let username = property(&doc, "SignupRequest", "username");
    assert_eq!((username["minLength"].as_u64(), username["maxLength"].as_u64()), (Some(3), Some(64)));
    assert_eq!(username["pattern"], "^[A-Za-z0-9_.-]+$");
    let password = property(&doc, "SignupRequest", "password");
    assert_eq!((password["minLength"].as_u64(), password["maxLength"].as_u64()), (Some(8), Some(128)));

    let work_type = property(&doc, "CreateWorkItem", "work_type");
    assert_eq!(work_type["enum"], serde_json::json!(["project", "activity", "task"]));
    let status = property(&doc, "PatchWorkItem", "status");
    assert_eq!(status["enum"], serde_json::json!(["not_started", "in_progress", "completed", "cancelled"]));

    // Input timestamps: RFC 3339 or a bare date. Output: RFC 3339, but a
    // feed event's start and end may be dates (all-day events, v1.1).
    let start = property(&doc, "CreateWorkItem", "start");
    let formats: Vec<&str> = start["anyOf"].as_array().unwrap().iter().filter_map(|s| s["format"].as_str()).collect();
    assert_eq!(formats, ["date-time", "date"]);
    for field in ["start", "end", "created_at", "updated_at"] {
        assert_eq!(property(&doc, "WorkItem", field)["format"], "date-time", "WorkItem.{field}");
    }
    for field in ["start", "end"] {
        let event_time = property(&doc, "FeedEvent", field);
        let formats: Vec<&str> =
            event_time["anyOf"].as_array().unwrap().iter().filter_map(|s| s["format"].as_str()).collect();
        assert_eq!(formats, ["date-time", "date"], "FeedEvent.{field}");
    }

    // Unknown fields are refused, and the document says so.
    for schema in ["CreateWorkItem", "PatchWorkItem", "SignupRequest", "LoginRequest"] {
        assert_eq!(component(&doc, schema)["additionalProperties"], false, "{schema}");
    }
    let required = component(&doc, "CreateWorkItem")["required"].as_array().unwrap().clone();
    let mut required: Vec<&str> = required.iter().filter_map(Value::as_str).collect();
    required.sort_unstable();
    assert_eq!(required, ["start", "title", "work_type"]);

    // Error codes are an enum the server sticks to.
    let code = property(&doc, "ErrorDetail", "code");
    let codes: Vec<&str> = code["enum"].as_array().unwrap().iter().filter_map(Value::as_str).collect();
    for c in ["invalid_input", "unauthenticated", "not_found", "conflict", "payload_too_large", "unavailable"] {
        assert!(codes.contains(&c), "{c}");
    }
}

/// The reverse of drift: every documented route answers as a route (the
/// default service would say 404 `not_found` or 405).
#[tokio::test]
async fn every_documented_route_exists() {
    let app = spawn_app().await;
    let doc = document(&app).await;
    for (path, item) in doc["paths"].as_object().unwrap() {
        for method in item.as_object().unwrap().keys() {
            let url = app.url(&path.replace("{id}", "00000000-0000-4000-8000-000000000000"));
            let method = Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
            let res = app.client.request(method.clone(), url).send().await.unwrap();
            let status = res.status();
            assert!(
                status != StatusCode::NOT_FOUND && status != StatusCode::METHOD_NOT_ALLOWED,
                "{method} {path} answered {status}"
            );
        }
    }
}

/// A method the document does not list for a path answers 405 with the
/// contract's body and `Allow` naming exactly the documented methods (RFC
/// 9110; schemathesis' `unsupported_method` check found them missing).
#[tokio::test]
async fn undocumented_methods_are_405_with_allow() {
    let app = spawn_app().await;
    let user = app.new_user().await;
    let doc = document(&app).await;
    for (path, item) in doc["paths"].as_object().unwrap() {
        let documented: Vec<String> = item.as_object().unwrap().keys().map(|m| m.to_uppercase()).collect();
        let url = app.url(&path.replace("{id}", "00000000-0000-4000-8000-000000000000"));
        for method in ["GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE"] {
            if documented.iter().any(|m| m == method) {
                continue;
            }
            let res = app
                .client
                .request(Method::from_bytes(method.as_bytes()).unwrap(), &url)
                .bearer_auth(&user.token)
                .send()
                .await
                .unwrap();
            assert_eq!(res.status(), StatusCode::METHOD_NOT_ALLOWED, "{method} {path}");
            let allow = res.headers().get("allow").and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
            let mut advertised: Vec<String> = allow.split(',').map(|m| m.trim().to_owned()).collect();
            advertised.sort();
            // HEAD is allowed wherever GET is (and not documented apart),
            // but for the change stream, whose GET never ends.
            let mut expected = documented.clone();
            if documented.iter().any(|m| m == "GET") && path.as_str() != "/api/calendar/changes" {
                expected.push("HEAD".to_owned());
            }
            expected.sort();
            assert_eq!(advertised, expected, "{method} {path}: Allow: {allow}");
            let body: Value = res.json().await.unwrap();
            assert_eq!(body["error"]["code"], "method_not_allowed", "{method} {path}");
        }
    }
}

/// `HEAD` wherever `GET` works: every GET route of the document, the page and
/// an asset answer HEAD with GET's status and headers and no body; a route
/// without GET answers HEAD with its 405.
#[tokio::test]
async fn head_works_wherever_get_does() {
    let app = spawn_app().await;
    let user = app.new_user().await;
    let item = app.create_item(&user, crate::helpers::item("x", "2026-10-06T09:00:00Z", "2026-10-06T10:00:00Z")).await;
    let id = item["id"].as_str().unwrap().to_owned();
    let doc = document(&app).await;
    let mut paths: Vec<String> = doc["paths"]
        .as_object()
        .unwrap()
        .iter()
        .filter(|(path, item)| item.get("get").is_some() && path.as_str() != "/api/calendar/changes")
        .map(|(path, _)| path.replace("{id}", &id))
        .collect();
    paths
        .iter_mut()
        .filter(|p| p.as_str() == "/api/calendar/feed")
        .for_each(|p| p.push_str("?start=2026-10-01&end=2026-11-01"));
    paths.extend(["/".to_owned(), "/assets/app.js".to_owned()]);
    for path in &paths {
        // The feed twice first, so GET and HEAD both see a warm entry.
        for _ in 0..2 {
            app.client.get(app.url(path)).bearer_auth(&user.token).send().await.unwrap();
        }
        let get = app.client.get(app.url(path)).bearer_auth(&user.token).send().await.unwrap();
        let head = app.client.head(app.url(path)).bearer_auth(&user.token).send().await.unwrap();
        assert_eq!(head.status(), get.status(), "HEAD {path}");
        assert!(get.status().is_success(), "GET {path}: {}", get.status());
        for (name, value) in get.headers() {
            if ["date", "content-length"].contains(&name.as_str()) {
                continue;
            }
            assert_eq!(head.headers().get(name), Some(value), "HEAD {path}: {name}");
        }
        let get_len = get.bytes().await.unwrap().len();
        let declared = head.headers().get("content-length").and_then(|v| v.to_str().ok()).map(str::to_owned);
        assert_eq!(head.bytes().await.unwrap().len(), 0, "HEAD {path} sent a body");
        if path != "/metrics" {
            assert_eq!(declared, Some(get_len.to_string()), "HEAD {path}: Content-Length");
        }
    }
    let res = app.client.head(app.url("/api/login")).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(res.headers().get("allow").and_then(|v| v.to_str().ok()), Some("POST"));
    // The change stream has no finished answer to take a head from.
    let res = app.client.head(app.url("/api/calendar/changes")).bearer_auth(&user.token).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(res.headers().get("allow").and_then(|v| v.to_str().ok()), Some("GET"));
}

/// The repository root (where `docs/` is).
fn repo_file(path: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

/// `docs/openapi.json` is the document the server serves, committed so a
/// change to the API shows in review as a change to that file. After an
/// intended change: `CALCACHE_BLESS=1 cargo test --test api openapi::` rewrites it.
#[tokio::test]
async fn the_committed_openapi_snapshot_is_what_the_server_serves() {
    let app = spawn_app().await;
    let served = document(&app).await;
    let path = repo_file("docs/openapi.json");
    let pretty = serde_json::to_string_pretty(&served).unwrap() + "\n";
    if std::env::var_os("CALCACHE_BLESS").is_some() {
        std::fs::write(&path, &pretty).unwrap();
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    let committed: Value = serde_json::from_str(&committed).unwrap_or(Value::Null);
    assert!(
        committed == served,
        "docs/openapi.json differs from the served document; if the change is intended, \
         run `CALCACHE_BLESS=1 cargo test --test api openapi::` and commit the file"
    );
}

/// The rows of the first Markdown table after `heading` in `text`, cells trimmed.
fn table_after(text: &str, heading: &str) -> Vec<Vec<String>> {
    let section = text.split(heading).nth(1).unwrap_or_else(|| panic!("no {heading:?} in docs/api.md"));
    section
        .lines()
        .skip_while(|l| !l.starts_with('|'))
        .take_while(|l| l.starts_with('|'))
        .skip(2) // header and separator
        .map(|l| l.trim_matches('|').split('|').map(|c| c.trim().trim_matches('`').to_owned()).collect())
        .collect()
}

/// `docs/api.md` states exactly the routes, their session requirement and
/// their statuses, and the error codes, that the OpenAPI document has.
#[tokio::test]
async fn docs_api_md_agrees_with_the_openapi_document() {
    let app = spawn_app().await;
    let doc = document(&app).await;
    let text = std::fs::read_to_string(repo_file("docs/api.md")).unwrap();

    let mut documented: Vec<(String, String, bool, Vec<String>)> = Vec::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            let session = op["security"].as_array().is_some_and(|s| !s.is_empty());
            let statuses = op["responses"].as_object().unwrap().keys().cloned().collect();
            documented.push((method.to_uppercase(), path.clone(), session, statuses));
        }
    }
    let mut stated: Vec<(String, String, bool, Vec<String>)> = table_after(&text, "## Routes")
        .into_iter()
        .map(|row| {
            let mut statuses: Vec<String> = row[3].split_whitespace().map(str::to_owned).collect();
            statuses.sort();
            (row[0].clone(), row[1].clone(), row[2] == "yes", statuses)
        })
        .collect();
    documented.sort();
    stated.sort();
    assert_eq!(stated, documented, "docs/api.md's route table (method, path, session, statuses)");

    let codes = doc["components"]["schemas"]["ErrorDetail"]["properties"]["code"]["enum"].as_array().unwrap();
    let mut codes: Vec<&str> = codes.iter().filter_map(Value::as_str).collect();
    let errors = table_after(&text, "## Errors");
    let mut listed: Vec<&str> = errors.iter().map(|row| row[0].as_str()).collect();
    codes.sort_unstable();
    listed.sort_unstable();
    assert_eq!(listed, codes, "docs/api.md's error codes");
    // Each with the status the server answers it with.
    for row in &errors {
        let status: u16 = row[1].parse().unwrap();
        let code = calcache::error::ErrorCode::parse(&row[0]).unwrap();
        assert_eq!(code.status().as_u16(), status, "{row:?}");
    }
}

/// The README and the docs link only to files in the repository (no
/// `../shared/...`, nothing missing), so a clone stands alone.
#[test]
fn docs_link_only_to_files_in_the_repository() {
    let root = repo_file("").canonicalize().unwrap();
    let mut files = vec![root.join("README.md"), root.join("BENCHMARKS.md")];
    for dir in ["docs", "results"] {
        let mut stack = vec![root.join(dir)];
        while let Some(d) = stack.pop() {
            for entry in std::fs::read_dir(&d).unwrap().flatten() {
                let p = entry.path();
                if p.is_dir() {
                    stack.push(p);
                } else if p.extension().is_some_and(|e| e == "md") {
                    files.push(p);
                }
            }
        }
    }
    let mut checked = 0;
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        for target in text.split("](").skip(1).filter_map(|rest| rest.split(')').next()) {
            let target = target.split('#').next().unwrap_or("").trim();
            if target.is_empty() || target.starts_with("http://") || target.starts_with("https://") {
                continue;
            }
            let resolved = file.parent().unwrap().join(target);
            let real =
                resolved.canonicalize().unwrap_or_else(|_| panic!("{}: {target} does not exist", file.display()));
            assert!(real.starts_with(&root), "{}: {target} is outside the repository", file.display());
            checked += 1;
        }
    }
    assert!(checked > 5, "only {checked} links found");
}

/// Every benchmark report has its tables as JSON beside it
/// (`cargo test --bench hit_rates -- --tables-json results/*/` writes them).
#[test]
fn every_benchmark_report_has_machine_readable_results() {
    let mut reports = 0;
    for entry in std::fs::read_dir(repo_file("results")).unwrap().flatten() {
        let dir = entry.path();
        if !dir.join("report.md").is_file() {
            continue;
        }
        reports += 1;
        let json = std::fs::read_to_string(dir.join("results.json"))
            .unwrap_or_else(|_| panic!("{} has report.md but no results.json", dir.display()));
        let json: Value = serde_json::from_str(&json).unwrap();
        let tables = json["tables"].as_array().unwrap();
        let md = std::fs::read_to_string(dir.join("report.md")).unwrap();
        assert_eq!(tables.len(), md.matches("\n| ---").count(), "{}: one JSON table per Markdown table", dir.display());
    }
    assert!(reports > 0);
}
