//! Query strings read so that an error names the parameter that failed: actix's
//! `web::Query` says only "invalid digit found in string" for `?baseline=abc`.
//! `serde_path_to_error` follows serde_urlencoded's reading and names the key it was at.

use std::future::{ready, Ready};
use std::ops::Deref;

use actix_web::dev::Payload;
use actix_web::{FromRequest, HttpRequest};
use serde::de::DeserializeOwned;

use crate::error::AppError;

/// A request's query string read as `T`; an unreadable one is a 400 naming its parameter.
pub struct Query<T>(pub T);

impl<T> Query<T> {
    pub fn into_inner(self) -> T {
        self.0
    }
}

impl<T> Deref for Query<T> {
    type Target = T;

    fn deref(&self) -> &T {
        &self.0
    }
}

impl<T: DeserializeOwned> FromRequest for Query<T> {
    type Error = actix_web::Error;
    type Future = Ready<Result<Self, Self::Error>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        ready(read(req.query_string()).map(Query).map_err(Into::into))
    }
}

/// `query` (without its `?`) read as `T`.
pub fn read<T: DeserializeOwned>(query: &str) -> Result<T, AppError> {
    let pairs = serde_urlencoded::Deserializer::new(form_urlencoded::parse(query.as_bytes()));
    serde_path_to_error::deserialize(pairs).map_err(|e| {
        let path = e.path().to_string();
        let reason = e.into_inner();
        if path.is_empty() || path == "." {
            AppError::BadRequest(format!("the query string could not be read: {reason}"))
        } else {
            AppError::BadRequest(format!("the query parameter `{path}` could not be read: {reason}"))
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(serde::Deserialize, Debug)]
    struct Page {
        baseline: Option<i64>,
        #[serde(default)]
        page: usize,
    }

    fn message(query: &str) -> String {
        match read::<Page>(query) {
            Err(AppError::BadRequest(m)) => m,
            other => panic!("{query}: {other:?}"),
        }
    }

    #[test]
    fn a_parameter_that_does_not_read_is_named() {
        assert!(message("baseline=abc").contains("`baseline`"), "{}", message("baseline=abc"));
        assert!(message("baseline=1&page=-2").contains("`page`"), "{}", message("baseline=1&page=-2"));
        let page = read::<Page>("baseline=7").unwrap();
        assert_eq!((page.baseline, page.page), (Some(7), 0));
        assert_eq!(read::<Page>("").unwrap().baseline, None);
    }
}
