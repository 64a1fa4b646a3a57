//! The OpenAPI 3.1 document of the JSON API, at `GET /api/openapi.json` (public).
//!
//! Written by hand from the handlers in `routes/` and the types they serialize (here and
//! in `labeling` and `registry`), as data: the schemas, then one [`Op`] per route. The
//! integration test `web_openapi` checks that every documented operation is a live
//! route answering only the statuses documented for it, that every `/api` route is
//! documented, and that the JSON bodies it sees match their schemas.

use std::sync::LazyLock;

use actix_web::http::header;
use actix_web::web::{self, ServiceConfig};
use actix_web::HttpResponse;
use serde_json::{json, Map, Value};

/// Serves the document at `/api/openapi.json`.
pub fn configure(cfg: &mut ServiceConfig) {
    cfg.route("/api/openapi.json", web::get().to(openapi_json));
}

/// The document, built and serialized once: it depends on nothing but the code.
static DOCUMENT: LazyLock<String> = LazyLock::new(|| document().to_string());

async fn openapi_json() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("application/json")
        .insert_header((header::CACHE_CONTROL, "public, max-age=3600"))
        .body(DOCUMENT.as_str())
}

/// The whole OpenAPI document.
pub fn document() -> Value {
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "plumb",
            "version": env!("CARGO_PKG_VERSION"),
            "summary": "plumb's JSON API: labeling projects, annotation, datasets, runs and the model registry.",
            "description": DESCRIPTION,
            "license": { "name": "Apache-2.0", "identifier": "Apache-2.0" },
        },
        "tags": [
            { "name": "projects", "description": "Labeling projects, their prompts and annotators (researchers)." },
            { "name": "annotation", "description": "Taking tasks and submitting demonstrations, rankings and A/B votes; one's own history and agreement." },
            { "name": "data", "description": "A project's counts, agreement, consensus, dataset snapshots and their exports (researchers)." },
            { "name": "models", "description": "The model registry: models, versions, lineage, tags, aliases, checkpoint files (researchers)." },
            { "name": "runs", "description": "Training, sampling and evaluation runs: launch, follow, cancel; comparing versions (researchers)." },
            { "name": "admin", "description": "Users, their roles and passwords, and the audit log (admins)." },
            { "name": "tokens", "description": "Your own API tokens: list, make (from a logged-in session), revoke." },
            { "name": "meta", "description": "This document." },
        ],
        "security": [{ "bearer": [] }, { "session": [] }],
        "paths": paths(),
        "components": {
            "securitySchemes": security_schemes(),
            "schemas": schemas(),
            "responses": error_responses(),
        },
    })
}

const DESCRIPTION: &str = "\
Every route but this document needs a logged-in caller, in one of two ways:

- **API token** (scripts, the simulated annotator): `Authorization: Bearer plumb_…`, a \
token issued to a user (it starts with `plumb_` and is shown once, when it is made). \
Token callers need no CSRF token. A token has a *scope*: an `annotate` token acts as an \
annotator whatever its user's role (only the `logged-in` routes: tasks, assignments, \
`/api/me/…`; researchers' routes answer 403), a `research` token with its user's role. \
It expires (7 to 365 days after it is made, 90 by default) and may be revoked, for good; \
an expired or revoked token, or a disabled user's, is a 401.
- **Session cookie** (the browser): the `plumb_session` cookie set by `POST /login`. \
Every state-changing request of a session must carry the session's CSRF token (the \
`csrf` hidden field of the app's pages): in the JSON body's `csrf` field, or, for a \
`DELETE` (which has no body), in the `X-CSRF-Token` header. A missing or stale token is \
a 403.

Roles: *annotators* take tasks in the projects they are members of; *researchers* (and \
admins) may use every route. Each operation's description names the role it needs, \
also as `x-plumb-role` (`admin`, `researcher`, `logged-in` or `public`). The `/api/admin` \
routes are for admins only.

Errors are JSON: `{\"error\": {\"status\", \"message\", \"field\"?}}`; `field` names the \
request field at fault on a 422. Without credentials the API answers 401 (never a \
redirect).";

fn security_schemes() -> Value {
    json!({
        "bearer": {
            "type": "http",
            "scheme": "bearer",
            "bearerFormat": "plumb_…",
            "description": "A user's API token, `plumb_` and 64 hexadecimal digits. No CSRF token needed.",
        },
        "session": {
            "type": "apiKey",
            "in": "cookie",
            "name": "plumb_session",
            "description": "The browser session set by `POST /login`. State-changing requests must \
    carry the session's CSRF token: in the JSON body's `csrf` field, or in the `X-CSRF-Token` \
    header for `DELETE`; otherwise 403.",
        },
    })
}

// ---------------------------------------------------------------------------------
// Schema helpers.

/// `{"$ref": "#/components/schemas/<name>"}`.
fn schema(name: &str) -> Value {
    json!({ "$ref": format!("#/components/schemas/{name}") })
}

fn array(items: Value) -> Value {
    json!({ "type": "array", "items": items })
}

fn int() -> Value {
    json!({ "type": "integer", "format": "int64" })
}

fn count() -> Value {
    json!({ "type": "integer", "minimum": 0 })
}

fn number() -> Value {
    json!({ "type": "number" })
}

fn text() -> Value {
    json!({ "type": "string" })
}

fn boolean() -> Value {
    json!({ "type": "boolean" })
}

fn time() -> Value {
    json!({ "type": "string", "format": "date-time" })
}

fn one_of(values: &[&str]) -> Value {
    json!({ "type": "string", "enum": values })
}

/// Any JSON object.
fn any_object() -> Value {
    json!({ "type": "object" })
}

/// `schema` or null.
fn nullable(schema: Value) -> Value {
    match schema.get("type") {
        Some(Value::String(t)) if schema.get("enum").is_none() => {
            let mut s = schema.clone();
            s["type"] = json!([t, "null"]);
            s
        }
        _ => json!({ "anyOf": [schema, { "type": "null" }] }),
    }
}

/// `schema` with a description.
fn described(mut schema: Value, description: &str) -> Value {
    if schema.get("$ref").is_some() {
        // A `$ref`'s siblings are allowed in 3.1, but tools read an `allOf` more reliably.
        schema = json!({ "allOf": [schema] });
    }
    schema["description"] = description.into();
    schema
}

/// An object schema: its properties (in order) and which of them are required.
fn object(required: &[&str], properties: Value) -> Value {
    json!({ "type": "object", "required": required, "properties": properties })
}

/// A request body's object: `object` plus the session's `csrf` field. Nothing else is
/// accepted: an unknown field is a 400 naming it.
fn body_object(required: &[&str], properties: Value) -> Value {
    let mut o = object(required, properties);
    o["properties"]["csrf"] = csrf_field();
    o["additionalProperties"] = false.into();
    o
}

/// No token has a control character, so a `csrf` with one is refused (422) even from a
/// Bearer caller, whose `csrf` is otherwise not looked at.
fn csrf_field() -> Value {
    described(
        json!({ "type": "string", "pattern": NO_CONTROL_CHARACTERS }),
        "With a session cookie: the session's CSRF token. Not needed with a Bearer token.",
    )
}

/// A string without control characters (Unicode's Cc: U+0000–U+001F, U+007F–U+009F).
const NO_CONTROL_CHARACTERS: &str = "^[^\\u0000-\\u001f\\u007f-\\u009f]*$";

/// Blank space as Rust's `trim` sees it (Unicode's White_Space).
const WHITE_SPACE: &str =
    "[\\t\\n\\u000b\\u000c\\r \\u0085\\u00a0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000]";

/// A character of free text: anything but a control character other than tab, newline
/// and carriage return (`labeling::domain`'s text types).
const TEXT_CHAR: &str = "[^\\u0000-\\u0008\\u000b\\u000c\\u000e-\\u001f\\u007f-\\u009f]";

/// A character of a one-line name: no control character at all.
const LINE_CHAR: &str = "[^\\u0000-\\u001f\\u007f-\\u009f]";

/// A character that is neither blank space nor a control character.
const VISIBLE: &str = "[^\\t\\n\\u000b\\u000c\\r \\u0085\\u00a0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000\\u0000-\\u001f\\u007f-\\u009f]";

/// Free text of at most `max` characters, as `labeling::domain`'s text types check it:
/// no control character but tab, newline and carriage return; `blank`: whether it may
/// be empty or blank.
fn free_text(max: usize, blank: bool) -> Value {
    let pattern =
        if blank { format!("^{TEXT_CHAR}*$") } else { format!("^{TEXT_CHAR}*{VISIBLE}{TEXT_CHAR}*$") };
    json!({ "type": "string", "maxLength": max, "pattern": pattern })
}

/// A name shown in lists and titles (`ProjectName`): one line, not blank, no blank space
/// around it, at most `max` characters.
fn one_line_name(max: usize) -> Value {
    json!({ "type": "string", "maxLength": max, "pattern": format!("^{VISIBLE}({LINE_CHAR}*{VISIBLE})?$") })
}

/// A label such as a snapshot's or an import's name: not blank, no NUL, at most 200
/// characters.
fn label() -> Value {
    json!({ "type": "string", "maxLength": 200, "pattern": "^[^\\u0000]*[^\\s\\u0000][^\\u0000]*$" })
}

/// A login name (`labeling::domain::Username`).
fn username() -> Value {
    json!({ "type": "string", "pattern": "^[a-z0-9][a-z0-9_.-]{0,63}$" })
}

/// A version in `?v=`: an id, or a version reference (`model`, `model:n`, `model@alias`)
/// as the run contract writes it.
fn version_pick() -> String {
    format!("^\\s*(-?[0-9]{{1,18}}|{})\\s*$", spec::schema::version_reference())
}

/// Every run kind, and the empty string for any.
fn run_kinds_or_any() -> Vec<&'static str> {
    std::iter::once("").chain(spec::RunKind::ALL.iter().map(|k| k.as_str())).collect()
}

/// A string without a NUL byte: what any path or query string parameter may hold
/// (`%00` anywhere in a path or query is a 400).
const NO_NUL: &str = "^[^\\u0000]*$";

// ---------------------------------------------------------------------------------
// The schemas, by subject.

fn schemas() -> Value {
    let mut all = Map::new();
    for group in [
        common_schemas(),
        project_schemas(),
        annotation_schemas(),
        data_schemas(),
        model_schemas(),
        run_schemas(),
        admin_schemas(),
        token_schemas(),
    ] {
        if let Value::Object(group) = group {
            all.extend(group);
        }
    }
    Value::Object(all)
}

fn common_schemas() -> Value {
    json!({
        "Error": object(&["error"], json!({
            "error": object(&["status", "message"], json!({
                "status": described(json!({ "type": "integer" }), "The HTTP status, again."),
                "message": described(text(), "What went wrong, for a person to read."),
                "field": described(text(), "On a 422: the request field at fault (`name`, `stage.lr`, `ranks` …)."),
                "problems": described(
                    array(object(&["field", "message"], json!({ "field": text(), "message": text() }))),
                    "On a 422 for a run config with several problems: each of them, naming its field.",
                ),
            })),
        })),
        "CsrfOnly": body_object(&[], json!({})),
        "User": object(&["id", "username", "display_name", "role", "disabled", "created_at"], json!({
            "id": int(),
            "username": text(),
            "display_name": text(),
            "role": one_of(&["admin", "researcher", "annotator"]),
            "disabled": boolean(),
            "created_at": time(),
        })),
        "Split": one_of(&["train", "val", "test"]),
        "TaskKind": one_of(&["demonstration", "ranking", "comparison"]),
    })
}

fn project_schemas() -> Value {
    json!({
        "Project": object(
            &["id", "name", "guidelines", "overlap", "samples_per_task", "revisions_allowed", "shuffle_samples", "created_by", "created_at"],
            json!({
                "id": int(),
                "name": text(),
                "guidelines": described(text(), "Markdown."),
                "overlap": described(json!({ "type": "integer", "minimum": 1, "maximum": 20 }), "How many annotators do each task."),
                "samples_per_task": described(json!({ "type": "integer", "minimum": 2, "maximum": 9 }), "K: samples per ranking task."),
                "revisions_allowed": described(boolean(), "Whether annotators may revise their answers; each revision is a new row that supersedes the answer it replaces."),
                "shuffle_samples": described(boolean(), "Whether each annotator sees a ranking task's samples in an order drawn for them (recorded per assignment); ranks refer to samples either way."),
                "created_by": nullable(int()),
                "created_at": time(),
            }),
        ),
        "NewProject": body_object(&["name"], json!({
            "name": described(one_line_name(200), "Unique; a taken name is a 409."),
            "guidelines": described(free_text(200_000, true), "Markdown; default empty."),
            "overlap": described(nullable(json!({ "type": "integer", "minimum": 1, "maximum": 20 })), "Default 1."),
            "samples_per_task": described(nullable(json!({ "type": "integer", "minimum": 2, "maximum": 9 })), "Default 4."),
        })),
        "ProjectSettings": object(&["project", "guidelines_html", "members"], json!({
            "project": schema("Project"),
            "guidelines_html": described(text(), "The guidelines rendered from Markdown and sanitised."),
            "members": described(array(schema("User")), "The project's annotators."),
        })),
        "ProjectSettingsChange": described(
            body_object(&[], json!({
                "guidelines": nullable(free_text(200_000, true)),
                "overlap": nullable(json!({ "type": "integer", "minimum": 1, "maximum": 20 })),
                "samples_per_task": nullable(json!({ "type": "integer", "minimum": 2, "maximum": 9 })),
                "revisions_allowed": nullable(boolean()),
                "shuffle_samples": nullable(boolean()),
            })),
            "Any subset of the settings (null is the same as absent); the others stay as they are.",
        ),
        "MemberAdd": body_object(&["username"], json!({
            "username": described(username(), "An enabled user; an unknown one is a 404, a disabled one a 422 on `username`."),
        })),
        "Prompt": object(
            &["id", "project_id", "text", "source", "split", "created_by", "created_at"],
            json!({
                "id": int(),
                "project_id": int(),
                "text": text(),
                "source": described(text(), "Where it came from (`upload`, …)."),
                "split": schema("Split"),
                "created_by": nullable(int()),
                "created_at": time(),
            }),
        ),
        "PromptUpload": body_object(&["format", "data"], json!({
            "format": one_of(&["jsonl", "csv"]),
            "data": described(text(), "The file's text: JSON lines `{\"prompt\", \"split\"?}` or CSV with a `prompt` (and optional `split`) column. At most 10 MiB and 100,000 lines (more is a 400)."),
        })),
        "DemonstrationRequest": body_object(&[], json!({
            "split": described(one_of(&["", "train", "val", "test"]), "Only prompts of this split; empty or absent: any."),
            "limit": described(nullable(json!({ "type": "integer", "format": "int64", "minimum": 1 })), "At most this many tasks; absent or null: one for every prompt without one."),
        })),
        "ImportReport": object(&["imported", "duplicates", "errors"], json!({
            "imported": array(object(&["line", "prompt_id"], json!({ "line": count(), "prompt_id": int() }))),
            "duplicates": array(object(&["line", "of"], json!({
                "line": count(),
                "of": {
                    "oneOf": [
                        object(&["earlier_line"], json!({ "earlier_line": count() })),
                        object(&["existing_prompt"], json!({ "existing_prompt": int() })),
                    ],
                    "description": "The same prompt on an earlier line of the file, or a prompt already in the project.",
                },
            }))),
            "errors": array(object(&["line", "field", "message"], json!({
                "line": count(),
                "field": described(text(), "`prompt`, `split`, or `line` when the line as a whole is unreadable."),
                "message": text(),
            }))),
        })),
        "DataImport": body_object(&["format", "name", "data"], json!({
            "format": described(one_of(&["trl", "hh", "messages", "kwise"]), "`trl`: `{\"prompt\", \"chosen\", \"rejected\"}` (strings or message lists, or no prompt and two message lists sharing all but their last turn); `hh`: Anthropic HH-RLHF transcripts `{\"chosen\", \"rejected\"}`; `messages`: `{\"messages\": [...]}` demonstrations; `kwise`: `{\"prompt\", \"samples\", \"ranking\"}`."),
            "name": described(label(), "The import's name (the file's), 1 to 200 characters, not blank: the source its rows are attributed to."),
            "data": described(text(), "The file's text, JSON lines. At most 10 MiB and 100,000 lines (more is a 400)."),
        })),
        "DataImportReport": object(&["source_id", "file_sha256", "already_imported", "imported", "errors"], json!({
            "source_id": nullable(described(int(), "The import the rows are attributed to (not a person); null when no line could be imported and nothing was written.")),
            "file_sha256": described(text(), "The file's SHA-256, lowercase hex."),
            "already_imported": described(boolean(), "The project had this very file: nothing was added."),
            "imported": array(object(&["line", "prompt_id"], json!({
                "line": count(),
                "prompt_id": int(),
                "ranking_id": described(int(), "The ranking the line became (trl, hh, kwise)."),
                "demonstration_id": described(int(), "The demonstration the line became (messages)."),
            }))),
            "errors": array(object(&["line", "field", "message"], json!({
                "line": count(),
                "field": described(text(), "The field at fault (`chosen`, `messages[2].role`), or `line` when the line as a whole is unreadable."),
                "message": text(),
            }))),
        })),
        "ImportSource": object(&["id", "project_id", "name", "format", "file_sha256", "line_count", "imported_by", "created_at"], json!({
            "id": int(),
            "project_id": int(),
            "name": text(),
            "format": one_of(&["trl", "hh", "messages", "kwise"]),
            "file_sha256": described(text(), "Lowercase hex."),
            "line_count": described(count(), "The lines imported."),
            "imported_by": nullable(int()),
            "created_at": time(),
        })),
    })
}

fn annotation_schemas() -> Value {
    let key = described(
        json!({ "type": "string", "format": "uuid" }),
        "Chosen by the client per submission: a retry with the same key and content stores nothing new (`stored: false`); the same key with other content is a 409.",
    );
    let time_spent = described(
        nullable(json!({ "type": "integer", "minimum": 0, "maximum": i32::MAX })),
        "Milliseconds spent on the task, if measured.",
    );
    let revises = described(
        nullable(int()),
        "To revise an answered task (while its project allows revisions): the id of the answer that stands. The revision is stored as a new row; a stale id is a 409.",
    );
    json!({
        "Assignment": object(
            &["assignment_id", "task_id", "kind", "project_id", "prompt", "samples", "k", "lease_until", "lease_expired", "state"],
            json!({
                "assignment_id": int(),
                "task_id": int(),
                "kind": schema("TaskKind"),
                "project_id": int(),
                "prompt": object(&["id", "text", "messages"], json!({
                    "id": int(),
                    "text": described(text(), "What the model is prompted with: a conversation rendered by plumb's chat template."),
                    "messages": described(nullable(array(object(&["role", "content"], json!({ "role": one_of(&["system", "user", "assistant"]), "content": text() })))), "A conversation's turns, oldest first, ending with the user's; null for a plain prompt."),
                })),
                "samples": described(
                    array(object(&["id", "position", "text", "same_as"], json!({
                        "id": int(),
                        "position": described(count(), "The sample's position in the task: what ranks, ratings and flags refer to."),
                        "text": text(),
                        "same_as": described(nullable(count()), "The position of an earlier-listed sample with the very same text: the page shows it once, and a ranking must tie the two."),
                    }))),
                    "In the order to show them: a ranking task's in an order drawn for this assignment (recorded, so that every annotator sees their own order and ranks still refer to positions); by position otherwise (for a comparison, position 0 is side A). Never the models behind them. Empty for a demonstration.",
                ),
                "k": described(count(), "How many samples the task shows."),
                "lease_until": described(time(), "The task returns to the queue after this (a submit is still accepted while no one else has taken it)."),
                "lease_expired": boolean(),
                "state": one_of(&["leased", "submitted", "skipped"]),
            }),
        ),
        "DemonstrationSubmit": body_object(&["text", "idempotency_key"], json!({
            "text": described(free_text(20_000, false), "The ideal response; blank is a 422 on `text`."),
            "idempotency_key": key,
            "time_spent_ms": time_spent,
            "revises": revises,
        })),
        "RankingSubmit": described(
            body_object(&["idempotency_key"], json!({
                "ranks": described(nullable(array(json!({ "type": "integer", "format": "int64", "minimum": 1 }))), "One rank number per sample, by position (1 the best; tied samples share a number; the numbers run 1, 2, … without gaps). Give `ranks` or `ranking`, not both."),
                "ranking": described(nullable(array(array(count()))), "Groups of sample positions, best first; samples in one group are tied."),
                "all_bad": described(boolean(), "Every sample is bad; then the order may be left out."),
                "likert": described(array(json!({ "type": ["integer", "null"], "minimum": 1, "maximum": 7 })), "One 1–7 rating (or null) per sample; empty when nothing was rated."),
                "flags": described(
                    array(json!({
                        "type": "array",
                        "prefixItems": [json!({ "type": "integer", "minimum": 0, "maximum": spec::run::MAX_K - 1 }), one_of(&["fails_task", "harmful", "hallucination", "not_followed", "other"])],
                        "minItems": 2,
                        "maxItems": 2,
                    })),
                    "`[position, flag]` pairs.",
                ),
                "comment": free_text(5_000, true),
                "idempotency_key": key,
                "time_spent_ms": time_spent,
                "revises": revises,
            })),
            "A ranking of a ranking task's K samples. A ranking of another kind of task is a 409.",
        ),
        "VoteSubmit": body_object(&["vote", "idempotency_key"], json!({
            "vote": described(one_of(&["a", "b", "tie", "both_bad"]), "Side A (position 0) better, side B better, a tie, or both bad."),
            "comment": free_text(5_000, true),
            "idempotency_key": key,
            "time_spent_ms": time_spent,
            "revises": revises,
        })),
        "Submitted": object(&["id", "stored"], json!({
            "id": described(int(), "The stored row's id (demonstration, ranking or vote)."),
            "stored": described(boolean(), "False when a retry found the row its first attempt stored."),
        })),
        "Skipped": object(&["assignment_id", "state"], json!({
            "assignment_id": int(),
            "state": one_of(&["skipped"]),
        })),
        "Work": described(
            object(
                &["kind", "id", "task_id", "assignment_id", "project_id", "project_name", "prompt_id", "prompt", "created_at", "ranks", "all_bad", "vote", "response", "comment", "sample_order"],
                json!({
                    "kind": described(schema("TaskKind"), "`comparison` for an A/B vote."),
                    "id": described(int(), "The row's id in its own table."),
                    "task_id": nullable(int()),
                    "assignment_id": nullable(int()),
                    "project_id": int(),
                    "project_name": text(),
                    "prompt_id": int(),
                    "prompt": described(text(), "The prompt's first 200 characters."),
                    "created_at": time(),
                    "ranks": described(nullable(array(json!({ "type": "integer" }))), "A ranking's rank per sample position (0 the best, ties share); null when all bad without an order, or not a ranking."),
                    "all_bad": nullable(boolean()),
                    "vote": nullable(one_of(&["a", "b", "tie", "both_bad"])),
                    "response": described(nullable(text()), "A demonstration's first 200 characters."),
                    "comment": text(),
                    "sample_order": described(nullable(array(count())), "A ranking's sample positions in the order they were shown (the first shown first); null otherwise."),
                }),
            ),
            "One piece of one's own submitted work: the answer that stands (a revised answer's latest revision).",
        ),
        "History": object(&["items", "limit", "offset"], json!({
            "items": described(array(schema("Work")), "Newest first."),
            "limit": int(),
            "offset": int(),
        })),
        "MyAgreement": object(
            &["project_id", "project_name", "partners", "tasks_shared", "pairs", "agreement_rate", "kendall_tau"],
            json!({
                "project_id": int(),
                "project_name": text(),
                "partners": described(count(), "Annotators who ranked at least one task that you ranked too."),
                "tasks_shared": count(),
                "pairs": schema("PairCounts"),
                "agreement_rate": described(nullable(number()), "Of the sample pairs both ordered strictly, the fraction ordered the same way."),
                "kendall_tau": described(nullable(number()), "Mean Kendall τ-b over the shared tasks where it is defined."),
            }),
        ),
    })
}

fn data_schemas() -> Value {
    let rates = |extra: Value| {
        let mut properties = json!({
            "pairs": schema("PairCounts"),
            "agreement_rate": nullable(number()),
            "kendall_tau": nullable(number()),
        });
        if let (Value::Object(p), Value::Object(e)) = (&mut properties, extra) {
            p.extend(e);
        }
        properties
    };
    json!({
        "PairCounts": object(&["agreed", "compared"], json!({ "agreed": count(), "compared": count() })),
        "ProjectCounts": object(
            &["prompts", "tasks", "demonstrations", "rankings", "votes", "annotators_submitted", "annotators_active_7d"],
            json!({
                "prompts": object(&["train", "val", "test"], json!({ "train": int(), "val": int(), "test": int() })),
                "tasks": described(
                    array(object(&["kind", "open", "in_progress", "done"], json!({
                        "kind": schema("TaskKind"),
                        "open": int(),
                        "in_progress": int(),
                        "done": int(),
                    }))),
                    "One entry per task kind, zeros included.",
                ),
                "demonstrations": int(),
                "rankings": int(),
                "votes": int(),
                "annotators_submitted": int(),
                "annotators_active_7d": int(),
            }),
        ),
        "AgreementReport": object(&["per_annotator", "per_pair", "project", "tasks_shared"], json!({
            "per_annotator": array(object(
                &["annotator_id", "partners", "tasks_shared", "pairs", "agreement_rate", "kendall_tau"],
                rates(json!({ "annotator_id": int(), "partners": count(), "tasks_shared": count() })),
            )),
            "per_pair": array(object(
                &["annotator_a", "annotator_b", "tasks_shared", "pairs", "agreement_rate", "kendall_tau"],
                rates(json!({ "annotator_a": int(), "annotator_b": int(), "tasks_shared": count() })),
            )),
            "project": object(&["pairs", "agreement_rate", "kendall_tau"], rates(json!({}))),
            "tasks_shared": described(count(), "Tasks ranked (with an order) by at least two annotators."),
        })),
        "DataSummary": object(&["counts", "agreement", "annotators", "usernames"], json!({
            "counts": schema("ProjectCounts"),
            "agreement": schema("AgreementReport"),
            "annotators": described(array(schema("AnnotatorStats")), "One entry per annotator who submitted anything, by user id."),
            "usernames": described(
                json!({ "type": "object", "additionalProperties": text() }),
                "The usernames of the annotators the agreement report and the statistics name, by user id.",
            ),
        })),
        "AnnotatorStats": object(
            &["annotator_id", "done", "median_time_ms", "consensus_tasks", "consensus_pairs", "consensus_agreement", "outliers"],
            json!({
                "annotator_id": int(),
                "done": described(object(&["demonstration", "ranking", "comparison"], json!({ "demonstration": count(), "ranking": count(), "comparison": count() })), "Submissions by kind of task."),
                "median_time_ms": described(
                    object(&["demonstration", "ranking", "comparison"], json!({ "demonstration": nullable(number()), "ranking": nullable(number()), "comparison": nullable(number()) })),
                    "Median time spent per submission, by kind; null with no timed submission.",
                ),
                "consensus_tasks": described(count(), "Ranking tasks compared with the Borda consensus of the other annotators who ranked them (leave-one-out)."),
                "consensus_pairs": object(&["agreed", "compared"], json!({ "agreed": count(), "compared": count() })),
                "consensus_agreement": described(nullable(number()), "agreed / compared: the pairwise-order agreement with the others' consensus; null when no pair was compared."),
                "outliers": described(
                    array(json!({ "oneOf": [
                        object(&["reason", "kind", "median_time_ms", "others_median_time_ms"], json!({
                            "reason": one_of(&["too_fast"]),
                            "kind": one_of(&["demonstration", "ranking", "comparison"]),
                            "median_time_ms": number(),
                            "others_median_time_ms": number(),
                        })),
                        object(&["reason", "agreement"], json!({ "reason": one_of(&["low_agreement"]), "agreement": number() })),
                    ] })),
                    "Too fast: a median time under half the median of the other annotators' medians in a kind (with at least two others timed). Low agreement: under 0.5 over at least 3 sample pairs.",
                ),
            }),
        ),
        "Ranking": object(&["k", "groups"], json!({
            "k": count(),
            "groups": described(array(array(count())), "Groups of sample indices, best first; a group's samples are tied."),
        })),
        "TaskConsensus": object(&["task_id", "prompt_id", "consensus", "all_bad_without_order"], json!({
            "task_id": int(),
            "prompt_id": int(),
            "consensus": described(
                nullable(object(&["ranking", "mean_positions", "rankings"], json!({
                    "ranking": schema("Ranking"),
                    "mean_positions": described(array(number()), "Mean position (0 the best) of each sample, by index."),
                    "rankings": described(count(), "Rankings that contributed."),
                }))),
                "The Borda consensus; null while no annotator has ordered the samples.",
            ),
            "all_bad_without_order": count(),
        })),
        "ConsensusPage": object(&["total", "tasks"], json!({
            "total": described(count(), "Ranking tasks in the project."),
            "tasks": array(schema("TaskConsensus")),
        })),
        "SnapshotKind": one_of(&["prompts", "demonstrations", "rankings", "comparisons"]),
        "Snapshot": object(
            &["id", "project_id", "kind", "name", "filter", "item_count", "content_sha256", "created_by", "created_at"],
            json!({
                "id": int(),
                "project_id": int(),
                "kind": schema("SnapshotKind"),
                "name": text(),
                "filter": object(&[], json!({
                    "split": schema("Split"),
                    "drop_flags": array(one_of(&["fails_task", "harmful", "hallucination", "not_followed", "other"])),
                    "min_best_likert": json!({ "type": "integer", "minimum": 1, "maximum": 7 }),
                })),
                "item_count": count(),
                "content_sha256": described(text(), "Lowercase hex."),
                "created_by": nullable(int()),
                "created_at": time(),
            }),
        ),
        "SnapshotFreeze": snapshot_freeze(),
    })
}

/// Freezing a snapshot: the filters on flags and Likert ratings are for a rankings
/// snapshot only (another kind with one is a 422), so the body is one of two shapes.
fn snapshot_freeze() -> Value {
    const FLAG: &str = "(fails_task|harmful|hallucination|not_followed|other)";
    let blank = || json!({ "type": "string", "pattern": "^\\s*$" });
    let variant = |kinds: &[&str], drop_flags: Value, min_best_likert: Value| {
        body_object(
            &["kind", "name"],
            json!({
                "kind": one_of(kinds),
                "name": described(label(), "1 to 200 characters, not blank."),
                "split": described(one_of(&["", "train", "val", "test"]), "Only items whose prompt is in this split; empty or absent: every split."),
                "drop_flags": described(drop_flags, "Rankings only: leave out those that flag a sample with one of these, comma-separated (`harmful,hallucination`); empty or absent: none."),
                "min_best_likert": described(min_best_likert, "Rankings only: leave out those whose best samples' highest Likert rating is below this (1 to 7) or missing; empty or absent: no such filter."),
            }),
        )
    };
    let flags =
        json!({ "type": "string", "pattern": format!("^[\\s,]*({FLAG}(\\s*,[\\s,]*{FLAG})*)?[\\s,]*$") });
    let likert = json!({ "type": "string", "pattern": "^\\s*([1-7])?\\s*$" });
    json!({ "oneOf": [
        variant(&["rankings"], flags, likert),
        variant(&["prompts", "demonstrations", "comparisons"], blank(), blank()),
    ] })
}

fn model_schemas() -> Value {
    json!({
        "ModelKind": one_of(&["base", "sft", "reward", "policy"]),
        "ModelVersion": object(
            &["id", "model", "version", "kind", "run_id", "config", "metrics", "artifact_uri", "artifact_sha256", "artifact_size", "tags", "created_by", "created_at", "parents", "snapshots", "aliases"],
            json!({
                "id": int(),
                "model": described(text(), "The model's name."),
                "version": described(json!({ "type": "integer", "minimum": 1 }), "1, 2, … within the model."),
                "kind": schema("ModelKind"),
                "run_id": described(nullable(int()), "The run that trained it."),
                "config": described(any_object(), "The stage's config."),
                "metrics": described(any_object(), "Final metrics by name."),
                "artifact_uri": text(),
                "artifact_sha256": text(),
                "artifact_size": described(int(), "Bytes."),
                "tags": array(text()),
                "created_by": nullable(int()),
                "created_at": time(),
                "parents": described(
                    array(object(&["version_id", "role"], json!({ "version_id": int(), "role": text() }))),
                    "The versions it was trained from, with their roles (`base`, `sft`, `reward`, `reference` …).",
                ),
                "snapshots": described(
                    array(object(&["id", "content_sha256"], json!({ "id": int(), "content_sha256": text() }))),
                    "The dataset snapshots it was trained on.",
                ),
                "aliases": described(array(text()), "The model's aliases that name this version."),
            }),
        ),
        "Alias": object(&["alias", "version_id", "version", "updated_at"], json!({
            "alias": text(),
            "version_id": int(),
            "version": json!({ "type": "integer", "minimum": 1 }),
            "updated_at": time(),
        })),
        "ModelSummary": object(&["id", "name", "created_at", "latest", "aliases"], json!({
            "id": int(),
            "name": text(),
            "created_at": time(),
            "latest": nullable(schema("ModelVersion")),
            "aliases": array(schema("Alias")),
        })),
        "ModelDetail": object(&["name", "versions", "aliases"], json!({
            "name": text(),
            "versions": described(array(schema("ModelVersion")), "Newest first."),
            "aliases": array(schema("Alias")),
        })),
        "LineageEntry": object(&["version", "role", "via", "depth"], json!({
            "version": schema("ModelVersion"),
            "role": described(text(), "The role of the link that reaches this version."),
            "via": described(int(), "The version id at the other end of that link."),
            "depth": described(json!({ "type": "integer", "minimum": 1 }), "1 for a direct parent (or child), 2 for a grandparent, …"),
        })),
        "ArtifactFile": object(&["path", "size", "sha256"], json!({
            "path": described(text(), "Relative, `/`-separated."),
            "size": count(),
            "sha256": text(),
        })),
        "VersionDetail": object(&["version", "ancestors", "descendants", "files", "files_error"], json!({
            "version": schema("ModelVersion"),
            "ancestors": described(array(schema("LineageEntry")), "Nearest first."),
            "descendants": array(schema("LineageEntry")),
            "files": described(nullable(array(schema("ArtifactFile"))), "The checkpoint's files; null when they cannot be listed."),
            "files_error": described(nullable(text()), "Why the files cannot be listed (a missing or damaged artifact)."),
        })),
        "Tags": object(&["tags"], json!({ "tags": array(text()) })),
        "TagAdd": body_object(&["tag"], json!({ "tag": described(json!({ "type": "string", "pattern": format!("^{WHITE_SPACE}*{VISIBLE}{{1,64}}{WHITE_SPACE}*$") }), "1 to 64 characters, no blank space or control characters (blank space around it is trimmed).") })),
        "AliasSet": body_object(&["version"], json!({
            "version": described(json!({ "type": "integer", "format": "int32", "minimum": 1 }), "The version number the alias names; a missing one is a 404."),
        })),
    })
}

/// `POST /api/runs`'s body: one variant per run kind, each with its config's schema from
/// the run contract (`spec::schema`).
fn run_launch() -> Value {
    let variants: Vec<Value> = spec::RunKind::ALL
        .iter()
        .map(|kind| {
            let required: &[&str] = if spec::schema::config_required(*kind) {
                &["project_id", "kind", "config"]
            } else {
                &["project_id", "kind"]
            };
            let mut variant = body_object(required, json!({
                "project_id": described(int(), "A project that does not exist is a 404."),
                "kind": { "type": "string", "const": kind.as_str() },
                "config": described(
                    spec::schema::config_schema(*kind),
                    "The run config: its fields and `stage` settings (docs/runs.md). A version or snapshot it names that does not exist is a 404; what JSON Schema cannot say (a setting bounded by another) is checked too, a 422 naming the field.",
                ),
                "name": described(run_name(), "Default: `<kind> of <the version it starts from>`, or none."),
                "notes": described(run_notes(), "Default empty."),
            }));
            variant["title"] = format!("a {kind} run").into();
            variant
        })
        .collect();
    json!({ "oneOf": variants, "discriminator": { "propertyName": "kind" } })
}

/// A run's name: one line, at most 200 characters once trimmed (`registry::runs::RunName`).
fn run_name() -> Value {
    json!({
        "type": "string",
        "maxLength": 200,
        "pattern": format!("^{WHITE_SPACE}*{LINE_CHAR}*{WHITE_SPACE}*$"),
        "description": "One line (no control characters but blank space around it, which is trimmed), at most 200 characters.",
    })
}

/// A run's notes: at most 10000 characters once trimmed, no NUL (`registry::runs::RunNotes`).
fn run_notes() -> Value {
    json!({ "type": "string", "maxLength": 10_000, "pattern": NO_NUL, "description": "Free text, at most 10000 characters." })
}

fn run_schemas() -> Value {
    json!({
        "RunKind": one_of(&spec::RunKind::ALL.iter().map(|k| k.as_str()).collect::<Vec<_>>()),
        "RunStatus": one_of(&["queued", "running", "succeeded", "failed", "cancelled"]),
        "Run": object(
            &["id", "project_id", "kind", "name", "notes", "config", "status", "created_by", "created_at", "started_at", "finished_at", "worker", "attempts", "lease_until", "heartbeat_at", "cancel_requested", "step", "total_steps", "progress", "error", "world_size", "rendezvous"],
            json!({
                "id": int(),
                "project_id": nullable(int()),
                "kind": schema("RunKind"),
                "name": described(text(), "At most 200 characters on one line; empty when none was given."),
                "notes": described(text(), "The researcher's notes: at most 10000 characters."),
                "config": described(any_object(), "The run config (docs/runs.md)."),
                "status": schema("RunStatus"),
                "created_by": nullable(int()),
                "created_at": time(),
                "started_at": nullable(time()),
                "finished_at": nullable(time()),
                "worker": described(nullable(text()), "The worker that holds the run, or last held it."),
                "attempts": described(json!({ "type": "integer" }), "How many times a worker has claimed it."),
                "lease_until": nullable(time()),
                "heartbeat_at": nullable(time()),
                "cancel_requested": boolean(),
                "step": int(),
                "total_steps": nullable(int()),
                "progress": described(json!({ "type": "number", "minimum": 0, "maximum": 1 }), "step / total_steps."),
                "error": described(nullable(text()), "Why it failed."),
                "world_size": described(json!({ "type": "integer", "minimum": 1, "maximum": 64 }), "How many workers train the run together (its config's `world_size`; 1 when absent)."),
                "rendezvous": described(nullable(text()), "host:port where a gang run's ranks meet (rank 0's TCPStore), while it trains."),
            }),
        ),
        "RunRank": object(&["rank", "attempt", "worker", "state", "lease_until", "heartbeat_at", "expired"], json!({
            "rank": int(),
            "attempt": described(json!({ "type": "integer" }), "The run's attempt this rank belongs to."),
            "worker": text(),
            "state": one_of(&["assigned", "training", "done", "lost"]),
            "lease_until": time(),
            "heartbeat_at": nullable(time()),
            "expired": described(boolean(), "The lease ran out while the rank was assigned or training: its worker is gone."),
        })),
        "VersionLink": object(&["id", "model", "version", "url"], json!({
            "id": int(),
            "model": text(),
            "version": json!({ "type": "integer" }),
            "url": described(text(), "The version's page."),
        })),
        "RunDetail": {
            "allOf": [
                schema("Run"),
                object(&["eta_seconds", "version", "ranks"], json!({
                    "eta_seconds": described(nullable(number()), "Seconds left, from the time per step so far; null unless running."),
                    "version": described(nullable(schema("VersionLink")), "The version the run registered."),
                    "ranks": described(array(schema("RunRank")), "A gang run's ranks (current or last attempt); empty for a run on one worker."),
                })),
            ],
        },
        "RunLaunch": run_launch(),
        "RunDescription": described(
            body_object(&[], json!({
                "name": described(nullable(run_name()), "Empty removes the name."),
                "notes": nullable(run_notes()),
            })),
            "Either or both; what is left out stays as it is.",
        ),
        "RunCancelled": object(&["id", "status"], json!({
            "id": int(),
            "status": described(schema("RunStatus"), "`cancelled`, or `running` while the worker is asked to stop."),
        })),
        "MetricSeries": object(&["name", "steps", "values"], json!({
            "name": described(text(), "`loss/lm`, `objective/kl`, `val/accuracy` …"),
            "steps": array(int()),
            "values": array(number()),
        })),
        "LogLine": object(&["id", "at", "line"], json!({ "id": int(), "at": time(), "line": text() })),
        "RunDefaults": object(&["kind", "stage", "help", "settings", "fields"], json!({
            "kind": schema("RunKind"),
            "stage": described(any_object(), "The stage's default settings."),
            "help": described(json!({ "type": "object", "additionalProperties": text() }), "A help text per setting."),
            "settings": described(array(any_object()), "Each stage setting as the run contract declares it: `name`, `help`, `type` (integer, number, bool, optional_integer, optional_number), `range` (`low`, `high`), `essential`."),
            "fields": described(array(any_object()), "The kind's config fields besides `stage`: `name` (a path such as `prompts.split`), `label`, `help`, `required`, `absent` (what leaving it out means)."),
            "resolved": described(nullable(object(&["from", "n_embd", "stage"], json!({
                "from": text(),
                "n_embd": described(int(), "The version's width."),
                "stage": described(any_object(), "The stage defaults a run from this version uses: every setting that follows the model's width filled in."),
            }))), "With `?from=`: what a run from that version would use; null otherwise."),
        })),
        "EvalSample": object(&["version_id", "prompt_id", "text", "tokens", "eos", "repetition", "reward", "kl", "oracle"], json!({
            "version_id": int(),
            "prompt_id": int(),
            "text": text(),
            "tokens": described(count(), "New tokens, EOS not counted."),
            "eos": described(boolean(), "Ended with EOS rather than at the token limit."),
            "repetition": described(number(), "Share of the words that repeat an earlier word."),
            "reward": nullable(described(number(), "The reward model's score.")),
            "kl": nullable(described(number(), "log π(sample) − log π_ref(sample).")),
            "oracle": nullable(described(number(), "The demo world's oracle score, in [-1, 1].")),
        })),
        "WinRate": object(&["rate", "low", "high", "prompts"], json!({
            "rate": described(number(), "Wins plus half the ties, over prompts."),
            "low": described(number(), "2.5th percentile of the bootstrap over prompts."),
            "high": described(number(), "97.5th percentile."),
            "prompts": count(),
        })),
        "Rating": object(&["version_id", "label", "rating", "low", "high", "votes", "wins"], json!({
            "version_id": int(),
            "label": text(),
            "rating": described(number(), "Bradley–Terry strength on the Elo scale; 1000 is the versions' geometric mean."),
            "low": described(number(), "2.5th percentile of the bootstrap over votes."),
            "high": described(number(), "97.5th percentile."),
            "votes": count(),
            "wins": described(number(), "Votes won, a tie or both-bad counting half."),
        })),
        "Disagreement": object(&["prompt_id", "prompt", "annotators_prefer", "annotators_prefer_label", "reward_model_prefers", "reward_model_prefers_label", "votes_for", "votes_against", "reward_of_preferred", "reward_of_other"], json!({
            "prompt_id": int(),
            "prompt": text(),
            "annotators_prefer": described(int(), "The version most annotators voted for."),
            "annotators_prefer_label": text(),
            "reward_model_prefers": described(int(), "The version the reward model scored higher."),
            "reward_model_prefers_label": text(),
            "votes_for": count(),
            "votes_against": count(),
            "reward_of_preferred": number(),
            "reward_of_other": number(),
        })),
        "AbBatch": object(&["task_ids", "already_asked", "identical"], json!({
            "task_ids": described(array(int()), "The new comparison tasks."),
            "already_asked": described(count(), "Prompt and pair combinations that had a comparison task already."),
            "identical": described(count(), "Pairs whose two samples were the same text (not asked)."),
        })),
        "AbRequest": body_object(&[], json!({
            "a": described(nullable(int()), "Version A; absent: the run's first version."),
            "b": described(nullable(int()), "Version B; absent: every other version of the run against A."),
            "prompts": described(nullable(json!({ "type": "integer", "minimum": 1, "maximum": 1000 })), "Ask about the run's first this many prompts (default all, at most 1000)."),
        })),
        "EvalReport": object(&["run", "baseline", "versions", "prompts", "human", "skills", "probes"], json!({
            "run": schema("Run"),
            "baseline": described(int(), "The version the win rates are against."),
            "versions": array(object(&["version_id", "label", "color", "summary", "win_rate_reward", "win_rate_oracle", "win_rate_human", "overoptimisation"], json!({
                "version_id": int(),
                "label": text(),
                "color": text(),
                "summary": object(&["version_id", "prompts", "reward", "kl", "oracle", "tokens", "eos_rate", "repetition"], json!({
                    "version_id": int(),
                    "prompts": count(),
                    "reward": nullable(number()),
                    "kl": nullable(number()),
                    "oracle": nullable(number()),
                    "tokens": number(),
                    "eos_rate": number(),
                    "repetition": number(),
                })),
                "win_rate_reward": nullable(schema("WinRate")),
                "win_rate_oracle": nullable(schema("WinRate")),
                "win_rate_human": nullable(described(schema("WinRate"), "By the annotators' A/B votes between it and the baseline; `prompts` counts votes.")),
                "overoptimisation": described(array(object(&["step", "kl", "reward", "gold"], json!({
                    "step": count(),
                    "kl": described(number(), "Mean summed KL of the held-out samples to the reference policy, in nats."),
                    "reward": nullable(described(number(), "Mean reward-model score.")),
                    "gold": nullable(described(number(), "Mean gold (oracle) score, in [-1, 1]; on the demo world's tasks only.")),
                }))), "The held-out evaluations of the RL run that trained the version, in step order; empty for a version no such run trained."),
            }))),
            "prompts": array(object(&["prompt_id", "prompt", "samples", "best"], json!({
                "prompt_id": int(),
                "prompt": text(),
                "samples": array(nullable(schema("EvalSample"))),
                "best": nullable(described(count(), "Index of the best reward-model score.")),
            }))),
            "human": object(&["progress", "leaderboard", "disagreements"], json!({
                "progress": object(&["tasks", "votes"], json!({ "tasks": count(), "votes": count() })),
                "leaderboard": described(array(schema("Rating")), "Every version of the project with A/B votes, best first."),
                "disagreements": array(schema("Disagreement")),
            })),
            "skills": described(array(object(&["version_id", "skill", "shots", "correct", "total"], json!({
                "version_id": int(),
                "skill": described(text(), "The demo world's skill."),
                "shots": described(count(), "Worked examples before each question: 0 is zero-shot."),
                "correct": count(),
                "total": count(),
            }))), "Few-shot accuracy (empty when the run did not measure it)."),
            "probes": described(array(object(&["version_id", "probe", "template", "group_name", "word", "share"], json!({
                "version_id": int(),
                "probe": described(count(), "The probe's index in the run's config."),
                "template": text(),
                "group_name": text(),
                "word": described(text(), "A first word of the continuations, or `(none)`."),
                "share": described(number(), "Its share of the group's continuations."),
            }))), "Each probe's most frequent next words by group and version."),
            "reward_oracle_agreement": described(array(object(&["version_a", "version_b", "label_a", "label_b", "agree", "pairs"], json!({
                "version_a": int(),
                "version_b": int(),
                "label_a": text(),
                "label_b": text(),
                "agree": described(count(), "Pairs of the two versions' samples of one prompt that the reward model orders as the oracle does."),
                "pairs": described(count(), "Such pairs where the oracle does not tie."),
            }))), "The reward model against the demo world's oracle, by pair of versions (the lower id first); empty without both scores."),
        })),
        "Comparison": object(&["versions", "metrics", "config", "curves", "evals", "launch_eval"], json!({
            "versions": array(json!({
                "allOf": [
                    schema("ModelVersion"),
                    object(&["label", "color", "parent_labels"], json!({
                        "label": described(text(), "`name:n`."),
                        "color": described(text(), "Its colour in the overlaid curves."),
                        "parent_labels": described(array(text()), "Its parents as `role: name:n`."),
                    })),
                ],
            })),
            "metrics": described(
                array(object(&["name", "values", "lower_is_better", "best"], json!({
                    "name": text(),
                    "values": described(array(json!({})), "One final value (any JSON, or null) per version."),
                    "lower_is_better": described(
                        nullable(boolean()),
                        "Null where neither direction is better (learning rate, clip fraction …).",
                    ),
                    "best": described(nullable(count()), "The index of the best value, if a direction is better."),
                }))),
                "Final metrics across the versions.",
            ),
            "config": described(
                array(object(&["key", "values", "differs"], json!({
                    "key": described(text(), "A dotted path into the configs."),
                    "values": array(json!({})),
                    "differs": boolean(),
                }))),
                "Config keys across the versions.",
            ),
            "curves": described(
                array(object(&["name", "series"], json!({
                    "name": text(),
                    "series": array(object(&["version_id", "label", "steps", "values"], json!({
                        "version_id": int(),
                        "label": text(),
                        "steps": array(int()),
                        "values": array(number()),
                    }))),
                }))),
                "Training curves of the runs that made the versions, one per metric.",
            ),
            "evals": described(
                array(object(&["run_id", "versions", "covers"], json!({
                    "run_id": int(),
                    "versions": described(array(text()), "Every version it evaluated, as `name:n`."),
                    "covers": described(count(), "How many of the compared versions it evaluated."),
                }))),
                "Eval runs that evaluated any of the versions, newest first (at most 10); their reports are at `/api/evals/{id}`.",
            ),
            "launch_eval": described(text(), "The launch form of an eval run of these versions, pre-filled."),
        })),
    })
}

// ---------------------------------------------------------------------------------
// Responses and parameters.

/// The error responses, by status, for `components.responses`.
const ERRORS: [(u16, &str, &str); 6] = [
    (400, "BadRequest", "The request could not be read (malformed JSON, a missing field, a bad query string) or was refused as a whole."),
    (401, "Unauthenticated", "No valid session or API token."),
    (403, "Forbidden", "Not for your role or project, or (with a session) the CSRF token is missing or stale."),
    (404, "NotFound", "The object named in the path does not exist."),
    (409, "Conflict", "The object's state does not allow it (already finished, already submitted, a taken name, an idempotency key reused for other content …)."),
    (422, "Unprocessable", "Well-formed but invalid: `error.field` names the field."),
];

fn error_responses() -> Value {
    let mut responses = Map::new();
    for (status, name, description) in ERRORS {
        let mut response = json!({
            "description": description,
            "content": { "application/json": { "schema": schema("Error") } },
        });
        if status == 401 {
            response["headers"] = json!({ "WWW-Authenticate": { "schema": one_of(&["Bearer"]) } });
        }
        responses.insert(name.into(), response);
    }
    Value::Object(responses)
}

fn error_response(status: u16) -> Value {
    match ERRORS.iter().find(|(s, ..)| *s == status) {
        Some((_, name, _)) => json!({ "$ref": format!("#/components/responses/{name}") }),
        None => json!({
            "description": "An error.",
            "content": { "application/json": { "schema": schema("Error") } },
        }),
    }
}

fn path_param(name: &str, schema: Value, description: &str) -> Value {
    json!({ "name": name, "in": "path", "required": true, "schema": without_nul(schema), "description": description })
}

fn query_param(name: &str, schema: Value, description: &str) -> Value {
    json!({ "name": name, "in": "query", "required": false, "schema": without_nul(schema), "description": description })
}

/// A parameter's string schema, said to hold no NUL byte (a free string; an enum's
/// values have none anyway).
fn without_nul(mut schema: Value) -> Value {
    if schema["type"] == "string" && schema.get("enum").is_none() && schema.get("pattern").is_none() {
        schema["pattern"] = NO_NUL.into();
    }
    schema
}

fn id_param(what: &str) -> Value {
    path_param("id", int(), &format!("The {what}'s id."))
}

fn model_params() -> [Value; 2] {
    [
        path_param("name", text(), "The model's name."),
        path_param("n", json!({ "type": "integer", "format": "int32", "minimum": 1 }), "The version number."),
    ]
}

fn csrf_header_param() -> Value {
    json!({
        "name": "X-CSRF-Token",
        "in": "header",
        "required": false,
        "schema": { "type": "string", "pattern": NO_CONTROL_CHARACTERS },
        "description": "With a session cookie: the session's CSRF token (a DELETE has no body to carry it). Not needed with a Bearer token.",
    })
}

fn paging_params(default_limit: u32, max_limit: u32) -> [Value; 2] {
    [
        query_param(
            "limit",
            json!({ "type": "integer", "minimum": 1, "maximum": max_limit, "default": default_limit }),
            "How many to return.",
        ),
        query_param(
            "offset",
            json!({ "type": "integer", "format": "int64", "minimum": 0, "default": 0 }),
            "How many to skip.",
        ),
    ]
}

// ---------------------------------------------------------------------------------
// Operations.

/// Who may call an operation.
#[derive(Clone, Copy)]
enum Role {
    /// No login needed.
    Public,
    /// Any logged-in user: annotators, researchers and admins.
    LoggedIn,
    /// Researchers and admins; annotators get 403.
    Researcher,
    /// Admins; researchers and annotators get 403.
    Admin,
}

impl Role {
    fn name(self) -> &'static str {
        match self {
            Role::Public => "public",
            Role::LoggedIn => "logged-in",
            Role::Researcher => "researcher",
            Role::Admin => "admin",
        }
    }

    fn sentence(self) -> &'static str {
        match self {
            Role::Public => "No login needed.",
            Role::LoggedIn => "Role: any logged-in user (annotator, researcher or admin).",
            Role::Researcher => "Role: researcher (researchers and admins; annotators get 403).",
            Role::Admin => "Role: admin (researchers and annotators get 403).",
        }
    }
}

/// One operation (a method on a path), built up by the methods below.
struct Op {
    method: &'static str,
    path: &'static str,
    operation_id: &'static str,
    summary: &'static str,
    description: &'static str,
    role: Role,
    parameters: Vec<Value>,
    body: Option<(Value, bool)>,
    responses: Map<String, Value>,
}

fn op(method: &'static str, path: &'static str, operation_id: &'static str, summary: &'static str) -> Op {
    Op {
        method,
        path,
        operation_id,
        summary,
        description: "",
        role: Role::Researcher,
        parameters: Vec::new(),
        body: None,
        responses: Map::new(),
    }
}

impl Op {
    fn role(mut self, role: Role) -> Op {
        self.role = role;
        self
    }

    /// More than the summary: what else the caller should know.
    fn about(mut self, description: &'static str) -> Op {
        self.description = description;
        self
    }

    fn params(mut self, parameters: impl IntoIterator<Item = Value>) -> Op {
        self.parameters.extend(parameters);
        self
    }

    /// A required JSON body.
    fn body(mut self, schema: Value) -> Op {
        self.body = Some((schema, true));
        self
    }

    /// A JSON body that may be left out (token callers have nothing to send).
    fn optional_body(mut self, schema: Value) -> Op {
        self.body = Some((schema, false));
        self
    }

    /// A JSON success response.
    fn ok(self, status: u16, description: &str, schema: Value) -> Op {
        self.ok_as(status, description, "application/json", schema)
    }

    fn ok_as(mut self, status: u16, description: &str, media_type: &str, schema: Value) -> Op {
        let response = json!({ "description": description, "content": { media_type: { "schema": schema } } });
        self.responses.insert(status.to_string(), response);
        self
    }

    /// A success without a body.
    fn empty(mut self, status: u16, description: &str) -> Op {
        self.responses.insert(status.to_string(), json!({ "description": description }));
        self
    }

    /// Error statuses besides 401 (every operation but the public ones) and 403 (every
    /// researcher's operation).
    fn errors(mut self, statuses: &[u16]) -> Op {
        for status in statuses {
            self.responses.insert(status.to_string(), error_response(*status));
        }
        self
    }

    fn to_json(&self, tag: &str) -> Value {
        let mut responses = self.responses.clone();
        // Any route refuses a NUL byte (`%00`) in its path or query, and an API path
        // parameter that does not parse, with a 400.
        responses.insert("400".into(), error_response(400));
        // A body or query value that reads but is refused (a field out of its range, a
        // name that is taken by nothing) is a 422 naming the field.
        if self.body.is_some() || self.parameters.iter().any(|p| p["in"] == "query" || p["in"] == "header") {
            responses.insert("422".into(), error_response(422));
        }
        if !matches!(self.role, Role::Public) {
            responses.insert("401".into(), error_response(401));
        }
        if matches!(self.role, Role::Researcher | Role::Admin) {
            responses.insert("403".into(), error_response(403));
        }
        let description = if self.description.is_empty() {
            self.role.sentence().to_string()
        } else {
            format!("{}\n\n{}", self.role.sentence(), self.description)
        };
        let mut operation = json!({
            "operationId": self.operation_id,
            "summary": self.summary,
            "description": description,
            "tags": [tag],
            "x-plumb-role": self.role.name(),
            "responses": responses,
        });
        if !self.parameters.is_empty() {
            operation["parameters"] = Value::Array(self.parameters.clone());
        }
        if let Some((schema, required)) = &self.body {
            operation["requestBody"] = json!({
                "required": required,
                "content": { "application/json": { "schema": schema } },
            });
        }
        if matches!(self.role, Role::Public) {
            operation["security"] = json!([]);
        }
        operation
    }
}

/// The methods that the document declares for a request path (none when it names no
/// operation): what a 405 lists in its `Allow` header.
pub fn methods_at(path: &str) -> Vec<&'static str> {
    static ROUTES: std::sync::OnceLock<Vec<(&'static str, actix_web::dev::ResourceDef)>> =
        std::sync::OnceLock::new();
    let routes = ROUTES.get_or_init(|| {
        let ops = operations().into_iter().flat_map(|(_, ops)| ops);
        ops.map(|op| (op.method, actix_web::dev::ResourceDef::new(op.path))).collect()
    });
    routes.iter().filter(|(_, def)| def.is_match(path)).map(|(method, _)| *method).collect()
}

/// Every operation, grouped under its tag.
fn operations() -> Vec<(&'static str, Vec<Op>)> {
    vec![
        ("projects", project_ops()),
        ("annotation", annotation_ops()),
        ("data", data_ops()),
        ("models", model_ops()),
        ("runs", run_ops()),
        ("admin", admin_ops()),
        ("tokens", token_ops()),
        ("meta", meta_ops()),
    ]
}

fn paths() -> Value {
    let mut paths = Map::new();
    for (tag, ops) in operations() {
        for op in ops {
            let item = paths.entry(op.path).or_insert_with(|| json!({}));
            item[op.method.to_ascii_lowercase()] = op.to_json(tag);
        }
    }
    Value::Object(paths)
}

fn token_schemas() -> Value {
    json!({
        "ApiToken": object(&["id", "user_id", "name", "scope", "created_at", "expires_at", "last_used_at", "revoked_at"], json!({
            "id": int(),
            "user_id": int(),
            "name": described(text(), "What it is for."),
            "scope": described(one_of(&["annotate", "research"]), "`annotate`: acts as an annotator; `research`: with its user's role."),
            "created_at": time(),
            "expires_at": described(time(), "From then on it is refused (401)."),
            "last_used_at": described(nullable(time()), "When it was last used, to the minute; null if never."),
            "revoked_at": described(nullable(time()), "When it was revoked (for good); null if it was not."),
        })),
        "NewApiToken": body_object(&["name"], json!({
            "name": described(free_text(200, false), "1 to 200 characters, not blank; otherwise a 422 on `name`."),
            "scope": described(nullable(one_of(&["annotate", "research"])), "Default: `annotate` for annotators, `research` for researchers and admins. An annotator asking for `research`, or another value, is a 422 on `scope`."),
            "expires_in_days": described(nullable(json!({ "type": "integer", "minimum": 1, "maximum": 365, "default": 90 })), "How long it works; outside 1..=365, a 422 on `expires_in_days`."),
        })),
        "CreatedApiToken": {
            "allOf": [schema("ApiToken"), object(&["token"], json!({
                "token": described(text(), "The token itself, `plumb_` and 64 hexadecimal digits: shown this once (only its SHA-256 is kept)."),
            }))],
        },
    })
}

fn token_ops() -> Vec<Op> {
    vec![
        op("GET", "/api/tokens", "listTokens", "Your API tokens, newest first")
            .role(Role::LoggedIn)
            .about("Revoked and expired ones included.")
            .ok(200, "The tokens (never their secrets).", array(schema("ApiToken"))),
        op("POST", "/api/tokens", "createToken", "Make an API token")
            .role(Role::LoggedIn)
            .about("Only from a logged-in session (with its CSRF token): a request with an API token is a 403, so that a leaked token cannot mint its successors.")
            .body(schema("NewApiToken"))
            .ok(201, "The token, shown this once.", schema("CreatedApiToken"))
            .errors(&[403, 422]),
        op("DELETE", "/api/tokens/{id}", "revokeToken", "Revoke one of your API tokens")
            .role(Role::LoggedIn)
            .about("For good: it is refused (401) from then on. Revoking it again is harmless and answers the same, with the first revocation time. Another user's token is a 404.")
            .params([id_param("token"), csrf_header_param()])
            .ok(200, "The token as revoked.", schema("ApiToken"))
            .errors(&[403, 404]),
    ]
}

fn meta_ops() -> Vec<Op> {
    vec![op("GET", "/api/openapi.json", "openapi", "This OpenAPI document").role(Role::Public).ok(
        200,
        "The document.",
        any_object(),
    )]
}

fn project_ops() -> Vec<Op> {
    vec![
        op("GET", "/api/projects", "listProjects", "List the projects").ok(
            200,
            "Every project.",
            array(schema("Project")),
        ),
        op("POST", "/api/projects", "createProject", "Create a project")
            .body(schema("NewProject"))
            .ok(201, "The new project.", schema("Project"))
            .errors(&[400, 409, 422]),
        op("GET", "/api/projects/{id}", "getProject", "A project's settings and annotators")
            .params([id_param("project")])
            .ok(200, "The project, its guidelines as HTML and its members.", schema("ProjectSettings"))
            .errors(&[404]),
        op("PUT", "/api/projects/{id}", "updateProject", "Change a project's guidelines, overlap or K")
            .params([id_param("project")])
            .body(schema("ProjectSettingsChange"))
            .ok(200, "The project as changed.", schema("ProjectSettings"))
            .errors(&[400, 404, 422]),
        op("POST", "/api/projects/{id}/members", "addMember", "Add an annotator to a project")
            .about("Adding a member twice changes nothing.")
            .params([id_param("project")])
            .body(schema("MemberAdd"))
            .ok(201, "The project's members.", array(schema("User")))
            .errors(&[400, 404, 422]),
        op(
            "DELETE",
            "/api/projects/{id}/members/{username}",
            "removeMember",
            "Remove an annotator from a project",
        )
        .params([
            id_param("project"),
            path_param("username", text(), "The member's username."),
            csrf_header_param(),
        ])
        .ok(200, "The project's remaining members.", array(schema("User")))
        .errors(&[404, 422]),
        op("GET", "/api/projects/{id}/prompts", "listPrompts", "A project's prompts, searched and paged")
            .params([
                id_param("project"),
                query_param("q", text(), "Only prompts containing this text."),
                query_param("split", one_of(&["", "train", "val", "test"]), "Only this split; empty: any."),
                query_param("sort", one_of(&["", "oldest", "newest", "text", "tasks", "demonstrations"]), "The order: oldest first (empty), newest first, by text, most tasks or most demonstrations first; ties by id."),
            ])
            .params(paging_params(50, 1000))
            .ok(200, "The prompts found.", array(schema("Prompt")))
            .errors(&[400, 404, 422]),
        op("POST", "/api/projects/{id}/prompts", "importPrompts", "Import prompts from JSON lines or CSV")
            .about("Good lines are stored; duplicates and bad lines are reported line by line.")
            .params([id_param("project")])
            .body(schema("PromptUpload"))
            .ok(200, "What happened to each line.", schema("ImportReport"))
            .errors(&[400, 404, 422]),
        op("POST", "/api/projects/{id}/imports", "importData", "Import preference pairs, rankings or demonstrations")
            .about("Good lines are stored in one transaction, bad ones reported with their line and field; the rows are attributed to the import, not to a person. The same file again adds nothing. A file none of whose lines can be imported is a 422 whose problems name `line N.field`.")
            .params([id_param("project")])
            .body(schema("DataImport"))
            .ok(200, "What happened to each line.", schema("DataImportReport"))
            .errors(&[400, 404, 422]),
        op("GET", "/api/projects/{id}/imports", "listImports", "A project's imports, newest first")
            .params([id_param("project")])
            .ok(200, "The imports.", array(schema("ImportSource")))
            .errors(&[404]),
        op("POST", "/api/projects/{id}/demonstration-tasks", "requestDemonstrations", "Ask annotators for demonstrations")
            .about("One demonstration task for each of the project's prompts (of the split) that has none yet, oldest first.")
            .params([id_param("project")])
            .body(schema("DemonstrationRequest"))
            .ok(201, "The new tasks (none when every prompt already has one).", object(&["task_ids"], json!({ "task_ids": array(int()) })))
            .errors(&[400, 404, 422]),
    ]
}

fn annotation_ops() -> Vec<Op> {
    let assignment = || id_param("assignment");
    let own = "Only the assignment's own annotator may use it (another's is a 403).";
    vec![
        op("GET", "/api/me/projects", "myProjects", "The projects whose tasks you may take")
            .role(Role::LoggedIn)
            .about("An annotator's: the projects they are a member of; a researcher's: all.")
            .ok(200, "The projects.", array(schema("Project"))),
        op("POST", "/api/projects/{id}/tasks/next", "nextTask", "Take the project's next task")
            .role(Role::LoggedIn)
            .about("For the project's annotators, and researchers (to pilot it). Leases the next task to you for an hour (the one you already hold, if any).")
            .params([id_param("project")])
            .optional_body(schema("CsrfOnly"))
            .ok(200, "The task leased to you.", schema("Assignment"))
            .empty(204, "No task is left for you in this project.")
            .errors(&[403, 404]),
        op("GET", "/api/assignments/{id}", "getAssignment", "An assignment: its task, prompt and samples")
            .role(Role::LoggedIn)
            .about(own)
            .params([assignment()])
            .ok(200, "The assignment.", schema("Assignment"))
            .errors(&[403, 404]),
        op("POST", "/api/assignments/{id}/demonstration", "submitDemonstration", "Submit a demonstration")
            .role(Role::LoggedIn)
            .about(own)
            .params([assignment()])
            .body(schema("DemonstrationSubmit"))
            .ok(200, "Stored (or found stored by an earlier attempt with the same key).", schema("Submitted"))
            .errors(&[400, 403, 404, 409, 422]),
        op("POST", "/api/assignments/{id}/ranking", "submitRanking", "Submit a ranking of the task's samples")
            .role(Role::LoggedIn)
            .about(own)
            .params([assignment()])
            .body(schema("RankingSubmit"))
            .ok(200, "Stored (or found stored by an earlier attempt with the same key).", schema("Submitted"))
            .errors(&[400, 403, 404, 409, 422]),
        op("POST", "/api/assignments/{id}/vote", "submitVote", "Submit a blind A/B vote")
            .role(Role::LoggedIn)
            .about(own)
            .params([assignment()])
            .body(schema("VoteSubmit"))
            .ok(200, "Stored (or found stored by an earlier attempt with the same key).", schema("Submitted"))
            .errors(&[400, 403, 404, 409, 422]),
        op("POST", "/api/assignments/{id}/skip", "skipAssignment", "Skip a task")
            .role(Role::LoggedIn)
            .about("The task goes back to the queue for someone else. An answered assignment is a 409.")
            .params([assignment()])
            .optional_body(schema("CsrfOnly"))
            .ok(200, "Skipped.", schema("Skipped"))
            .errors(&[403, 404, 409]),
        op("GET", "/api/me/history", "myHistory", "Your own submitted work, newest first")
            .role(Role::LoggedIn)
            .params(paging_params(50, 500))
            .ok(200, "A page of your work.", schema("History"))
            .errors(&[400, 422]),
        op("GET", "/api/me/agreement", "myAgreement", "How well you agree with the other annotators")
            .role(Role::LoggedIn)
            .ok(200, "One entry per project you worked in.", array(schema("MyAgreement"))),
    ]
}

fn data_ops() -> Vec<Op> {
    vec![
        op("GET", "/api/projects/{id}/data", "projectData", "A project's counts, agreement and annotator statistics")
            .params([id_param("project")])
            .ok(200, "Counts of prompts, tasks and submissions, the agreement report, and each annotator's work, median times, agreement with the others' consensus and outlier flags.", schema("DataSummary"))
            .errors(&[404]),
        op("GET", "/api/projects/{id}/consensus", "projectConsensus", "The consensus ranking of each ranking task")
            .params([id_param("project")])
            .params(paging_params(100, 1000))
            .ok(200, "A page of the project's ranking tasks with their consensus.", schema("ConsensusPage"))
            .errors(&[400, 404]),
        op("GET", "/api/projects/{id}/snapshots", "listSnapshots", "A project's dataset snapshots")
            .params([id_param("project")])
            .ok(200, "The snapshots.", array(schema("Snapshot")))
            .errors(&[404]),
        op("POST", "/api/projects/{id}/snapshots", "freezeSnapshot", "Freeze a dataset snapshot")
            .about("Lists the project's items of the kind as they are now, with the hash of their content.")
            .params([id_param("project")])
            .body(schema("SnapshotFreeze"))
            .ok(201, "The snapshot.", schema("Snapshot"))
            .errors(&[400, 404, 422]),
        op("GET", "/api/snapshots/{id}/export", "exportSnapshot", "A snapshot as a training file")
            .about("JSON lines, as an attachment `project-<p>-snapshot-<s>-<format>.jsonl`. Formats: `prompts` for a prompts snapshot, `sft` or `messages` for demonstrations, `kwise`, `pairs`, `pairs_keep_ties`, `trl` or `hh` for rankings and comparisons.")
            .params([
                id_param("snapshot"),
                json!({
                    "name": "format",
                    "in": "query",
                    "required": true,
                    "schema": one_of(&["prompts", "sft", "messages", "kwise", "pairs", "pairs_keep_ties", "trl", "hh"]),
                    "description": "The training format.",
                    "example": "prompts",
                }),
            ])
            .ok_as(200, "One JSON object per line.", "application/x-ndjson", text())
            .errors(&[400, 404, 409, 422]),
    ]
}

fn model_ops() -> Vec<Op> {
    let [name, n] = model_params();
    let version = || [name.clone(), n.clone()];
    let alias = || [name.clone(), path_param("alias", text(), "The alias.")];
    vec![
        op("GET", "/api/models", "listModels", "List the models").ok(
            200,
            "Every model, with its latest version and aliases.",
            array(schema("ModelSummary")),
        ),
        op("GET", "/api/models/{name}", "getModel", "A model's versions and aliases")
            .params([name.clone()])
            .ok(200, "The model.", schema("ModelDetail"))
            .errors(&[404, 422]),
        op("GET", "/api/models/{name}/versions/{n}", "getVersion", "A version with its lineage and files")
            .params(version())
            .ok(200, "The version.", schema("VersionDetail"))
            .errors(&[404]),
        op(
            "GET",
            "/api/models/{name}/versions/{n}/files",
            "listVersionFiles",
            "A version's checkpoint files",
        )
        .params(version())
        .ok(200, "The files of its artifact, by path.", array(schema("ArtifactFile")))
        .errors(&[404, 409]),
        op(
            "GET",
            "/api/models/{name}/versions/{n}/files/{path}",
            "downloadVersionFile",
            "Download one checkpoint file",
        )
        .about("The bytes, checked against the manifest, as an attachment. A damaged file is a 409.")
        .params(version())
        .params([path_param("path", text(), "The file's path as the file list names it; may contain `/`.")])
        .ok_as(200, "The file.", "application/octet-stream", json!({ "type": "string", "format": "binary" }))
        .errors(&[400, 404, 409]),
        op("POST", "/api/models/{name}/versions/{n}/tags", "addTag", "Tag a version")
            .params(version())
            .body(schema("TagAdd"))
            .ok(200, "The version's tags.", schema("Tags"))
            .errors(&[400, 404, 422]),
        op("DELETE", "/api/models/{name}/versions/{n}/tags/{tag}", "removeTag", "Remove a version's tag")
            .params(version())
            .params([path_param("tag", text(), "The tag."), csrf_header_param()])
            .ok(200, "The version's remaining tags.", schema("Tags"))
            .errors(&[404]),
        op("PUT", "/api/models/{name}/aliases/{alias}", "setAlias", "Point an alias at a version")
            .about("Creates the alias or moves it.")
            .params(alias())
            .body(schema("AliasSet"))
            .ok(200, "The alias.", schema("Alias"))
            .errors(&[400, 404, 422]),
        op("DELETE", "/api/models/{name}/aliases/{alias}", "removeAlias", "Remove an alias")
            .params(alias())
            .params([csrf_header_param()])
            .empty(204, "Removed.")
            .errors(&[404]),
    ]
}

fn run_ops() -> Vec<Op> {
    let run = || id_param("run");
    vec![
        op("GET", "/api/runs", "listRuns", "The run queue and history, newest first")
            .params([
                query_param("project", json!({ "type": "string", "pattern": "^(-?[0-9]{1,18})?$" }), "Only this project's runs (an id); empty: any."),
                query_param("kind", one_of(&run_kinds_or_any()), "Only this kind; empty: any."),
                query_param("status", one_of(&["", "queued", "running", "succeeded", "failed", "cancelled"]), "Only this status; empty: any."),
                query_param("q", text(), "Only runs whose name or notes contain this text (any case)."),
                query_param("limit", json!({ "type": "integer", "minimum": 1, "maximum": 500, "default": 100 }), "How many to return: 1 to 500 (anything else is a 422)."),
            ])
            .ok(200, "The runs.", array(schema("Run")))
            .errors(&[400, 422]),
        op("POST", "/api/runs", "launchRun", "Launch a run")
            .about("The config is checked before the run is queued (docs/runs.md): a problem is a 422 naming its field (`base`, `stage.lr`, `snapshot_id`, `project_id` …).")
            .body(schema("RunLaunch"))
            .ok(201, "The queued run.", schema("Run"))
            .errors(&[400, 404, 422]),
        op("GET", "/api/runs/{id}", "getRun", "A run, with its ETA and the version it registered")
            .params([run()])
            .ok(200, "The run.", schema("RunDetail"))
            .errors(&[404]),
        op("PATCH", "/api/runs/{id}", "describeRun", "Rename a run or change its notes")
            .params([run()])
            .body(schema("RunDescription"))
            .ok(200, "The run as changed.", schema("Run"))
            .errors(&[400, 404, 422]),
        op("GET", "/api/runs/{id}/metrics", "runMetrics", "A run's metric series")
            .params([run()])
            .ok(200, "One series per metric, by name.", array(schema("MetricSeries")))
            .errors(&[404]),
        op("GET", "/api/runs/{id}/logs", "runLogs", "A run's log lines, oldest first")
            .params([
                run(),
                query_param("after", int(), "Only lines after this line id; absent: from the start."),
                query_param("limit", json!({ "type": "integer", "minimum": 1, "maximum": 1000, "default": 200 }), "How many lines."),
            ])
            .ok(200, "The lines.", array(schema("LogLine")))
            .errors(&[400, 404, 422]),
        op("POST", "/api/runs/{id}/cancel", "cancelRun", "Cancel a run")
            .about("A queued run is cancelled at once; a running one's worker is asked to stop. A finished run is a 409.")
            .params([run()])
            .optional_body(schema("CsrfOnly"))
            .ok(200, "The run's status now.", schema("RunCancelled"))
            .errors(&[404, 409]),
        op("GET", "/api/run-defaults/{kind}", "runDefaults", "A run kind's default stage settings")
            .params([
                path_param("kind", schema("RunKind"), "The run kind."),
                query_param("from", json!({ "type": "string", "pattern": format!("^\\s*({})?\\s*$", spec::schema::version_reference()) }), "A version reference (`name`, `name:3`, `name@alias`): also give the defaults resolved for that version's width (blank: none)."),
            ])
            .ok(200, "The defaults and a help text per setting.", schema("RunDefaults"))
            .errors(&[404, 422]),
        op("GET", "/api/compare", "compareVersions", "Versions side by side")
            .about("Kind, lineage, final metrics (the best marked), configs (differing keys marked) and the training curves of the runs that made them.")
            .params([json!({
                "name": "v",
                "in": "query",
                "required": true,
                "style": "form",
                "explode": true,
                "schema": { "type": "array", "items": { "type": "string", "pattern": version_pick() }, "minItems": 2, "maxItems": 8 },
                "description": "Versions, 2 to 8, as `model:n` (or a version id): `?v=sft:1&v=policy:2`.",
            })])
            .ok(200, "The comparison.", schema("Comparison"))
            .errors(&[404, 422]),
        op("GET", "/api/evals/{id}", "evalReport", "What an eval run measured")
            .about("Per version: means (RM score, KL, oracle, tokens, EOS rate, repetition) and win rates against the baseline by RM and by oracle with bootstrap 95% intervals; per prompt: the samples side by side.")
            .params([
                id_param("run"),
                query_param("baseline", int(), "The version the others are measured against; absent: the run's first."),
            ])
            .ok(200, "The report.", schema("EvalReport"))
            .errors(&[404, 422]),
        op("POST", "/api/evals/{id}/ab-batches", "createAbBatch", "Launch a blind A/B batch between an eval run's versions")
            .about("Comparison tasks for annotators between two versions' samples of the run's prompts, sides drawn at random. A pair already asked on a prompt is not asked again.")
            .params([id_param("run")])
            .body(schema("AbRequest"))
            .ok(201, "The batch.", schema("AbBatch"))
            .errors(&[400, 404, 409, 422]),
        op("POST", "/api/evals/{id}/ranking-tasks", "sendBackDisagreements", "Send the prompts where annotators and the reward model disagree back as ranking tasks")
            .about("One ranking task per such prompt, showing every version's sample of it; prompts already sent back are not sent again.")
            .params([id_param("run")])
            .body(body_object(&[], json!({})))
            .ok(201, "The new tasks.", object(&["task_ids"], json!({ "task_ids": array(int()) })))
            .errors(&[400, 404, 409]),
    ]
}

fn admin_schemas() -> Value {
    json!({
        "NewUser": body_object(&["username", "role"], json!({
            "username": described(username(), "A bad one is a 422 on `username`, a taken one a 409."),
            "display_name": described(free_text(200, true), "At most 200 characters. Default: the username."),
            "role": described(one_of(&["admin", "researcher", "annotator"]), "Another value is a 422 on `role`."),
        })),
        "RoleChange": body_object(&["role"], json!({
            "role": described(one_of(&["admin", "researcher", "annotator"]), "Another value is a 422 on `role`; an admin taking away their own admin role, too."),
        })),
        "OneTimePassword": object(&["user", "password"], json!({
            "user": schema("User"),
            "password": described(text(), "Made by the server and shown this once (only its hash is stored): pass it on; the user changes it at /account/password."),
        })),
        "AuditEntry": object(&["id", "at", "actor_id", "actor", "action", "subject", "details"], json!({
            "id": int(),
            "at": time(),
            "actor_id": described(nullable(int()), "Who made the change; null for the command line."),
            "actor": described(nullable(text()), "Their username."),
            "action": described(text(), "`user.create`, `user.disable`, `user.enable`, `user.role`, `user.password_reset`, `alias.set`, `alias.delete`."),
            "subject": described(text(), "What was changed: `user ann`, `alias policy@prod`."),
            "details": described(any_object(), "The rest: a new user's role, a role's `from` and `to`, an alias's version."),
        })),
        "AuditList": object(&["entries", "limit", "offset"], json!({
            "entries": described(array(schema("AuditEntry")), "Newest first."),
            "limit": int(),
            "offset": int(),
        })),
    })
}

fn admin_ops() -> Vec<Op> {
    let user = || id_param("user");
    vec![
        op("GET", "/api/admin/users", "listUsers", "Every user, by username")
            .role(Role::Admin)
            .ok(200, "The users.", array(schema("User"))),
        op("POST", "/api/admin/users", "createUser", "Create a user with a role and a one-time password")
            .role(Role::Admin)
            .about("The password is made by the server and answered this once. Written to the audit log.")
            .body(schema("NewUser"))
            .ok(201, "The new user and their one-time password.", schema("OneTimePassword"))
            .errors(&[409, 422]),
        op("POST", "/api/admin/users/{id}/disable", "disableUser", "Disable a user")
            .role(Role::Admin)
            .about("They can no longer log in; their sessions and API tokens stop working at their next request. Disabling yourself is a 422 on `disabled`. Written to the audit log.")
            .params([user()])
            .optional_body(schema("CsrfOnly"))
            .ok(200, "The user as changed.", schema("User"))
            .errors(&[404, 422]),
        op("POST", "/api/admin/users/{id}/enable", "enableUser", "Re-enable a disabled user")
            .role(Role::Admin)
            .about("Written to the audit log.")
            .params([user()])
            .optional_body(schema("CsrfOnly"))
            .ok(200, "The user as changed.", schema("User"))
            .errors(&[404]),
        op("PUT", "/api/admin/users/{id}/role", "changeUserRole", "Give a user another role")
            .role(Role::Admin)
            .about("It applies from their next request. Written to the audit log.")
            .params([user()])
            .body(schema("RoleChange"))
            .ok(200, "The user as changed.", schema("User"))
            .errors(&[404, 422]),
        op("POST", "/api/admin/users/{id}/password", "resetUserPassword", "Reset a user's password to a one-time password")
            .role(Role::Admin)
            .about("The new password is made by the server and answered this once; the user's login sessions end. Written to the audit log.")
            .params([user()])
            .optional_body(schema("CsrfOnly"))
            .ok(200, "The user and their one-time password.", schema("OneTimePassword"))
            .errors(&[404]),
        op("GET", "/api/admin/audit", "listAudit", "The audit log, newest first")
            .role(Role::Admin)
            .params([query_param("action", text(), "Only this action (`user.create` …); empty: all. An unknown one is a 422 on `action`.")])
            .params(paging_params(50, 500))
            .ok(200, "A page of the audit log.", schema("AuditList"))
            .errors(&[422]),
    ]
}
