//! Static assets (scripts and styles), compiled into the binary so that the app is one
//! file to deploy, at `/static/<name>` with an hour's cache lifetime. An entry:
//! `Asset { name: "x.js", content_type: JS, body: include_str!("../../static/x.js") }`; a
//! vendored file's name keeps its folder (`vendor/dagre/dagre.min.js`).

use actix_web::http::header::{CacheControl, CacheDirective, ContentType};
use actix_web::web::{self, ServiceConfig};
use actix_web::HttpResponse;

use crate::error::AppError;

/// One asset: its file name under `web/static/`, its content type and its text.
struct Asset {
    name: &'static str,
    content_type: &'static str,
    body: &'static str,
}

const JS: &str = "text/javascript; charset=utf-8";
const CSS: &str = "text/css; charset=utf-8";

const ASSETS: &[Asset] = &[
    Asset { name: "charts.js", content_type: JS, body: include_str!("../../static/charts.js") },
    Asset { name: "runs.js", content_type: JS, body: include_str!("../../static/runs.js") },
    Asset { name: "launch.js", content_type: JS, body: include_str!("../../static/launch.js") },
    Asset { name: "task.css", content_type: CSS, body: include_str!("../../static/task.css") },
    Asset { name: "task.js", content_type: JS, body: include_str!("../../static/task.js") },
    Asset { name: "ranking.js", content_type: JS, body: include_str!("../../static/ranking.js") },
    Asset { name: "confirm.js", content_type: JS, body: include_str!("../../static/confirm.js") },
    Asset { name: "lineage.js", content_type: JS, body: include_str!("../../static/lineage.js") },
    // dagre 3.1.4 (npm package `@dagrejs/dagre`, MIT licence, vendor/dagre/LICENSE and
    // dagre.min.js.LEGAL.txt): the layered layout of the version page's lineage graph.
    Asset {
        name: "vendor/dagre/dagre.min.js",
        content_type: JS,
        body: include_str!("../../static/vendor/dagre/dagre.min.js"),
    },
    Asset { name: "analytics.css", content_type: CSS, body: include_str!("../../static/analytics.css") },
    Asset { name: "eval.js", content_type: JS, body: include_str!("../../static/eval.js") },
    // uPlot 1.6.32 (npm package `uplot`, MIT licence, vendor/uplot/LICENSE): the run and
    // compare pages' charts, loaded by charts.js.
    Asset {
        name: "vendor/uplot/uPlot.iife.min.js",
        content_type: JS,
        body: include_str!("../../static/vendor/uplot/uPlot.iife.min.js"),
    },
    Asset {
        name: "vendor/uplot/uPlot.min.css",
        content_type: CSS,
        body: include_str!("../../static/vendor/uplot/uPlot.min.css"),
    },
];

pub fn configure(cfg: &mut ServiceConfig) {
    cfg.route("/static/{name:.+}", web::get().to(serve));
}

async fn serve(name: web::Path<String>) -> Result<HttpResponse, AppError> {
    let asset = ASSETS
        .iter()
        .find(|a| a.name == name.as_str())
        .ok_or_else(|| AppError::NotFound(format!("no static file {}", name.as_str())))?;
    Ok(HttpResponse::Ok()
        .insert_header(ContentType(asset.content_type.parse().expect("asset content types are valid")))
        .insert_header(CacheControl(vec![CacheDirective::Public, CacheDirective::MaxAge(3600)]))
        .body(asset.body))
}
