//! The actix-web app: annotators' and researchers' pages, the JSON API and auth. It
//! never links libtorch. Filled in by the "Web app" issue.
