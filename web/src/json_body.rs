//! JSON request bodies, read by JSON's own rules for numbers.
//!
//! JSON has one number type: `6` and `6.0` are the same number, and the API document (an
//! OpenAPI 3.1 / JSON Schema document) calls both an `integer`. serde reads `6.0` into an
//! `i64` field as a float and refuses it, so clients that write every number as a
//! float (JavaScript's `JSON.stringify` does not, but many languages' encoders do) would
//! get a 400 for a valid body. [`JsonBody`] reads the body as JSON first; when its type
//! refuses it, it writes every float without a fractional part, within `i64`'s range, as
//! the integer it is and reads it again (so a body that reads as it is keeps its numbers
//! as written, `6.0` in a run's config included). A fractional value in an integer field
//! is still refused.
//!
//! A field that the body's type does not know is refused too (a 400 naming it, found
//! with `serde_ignored`), for every body type alike: a misspelt optional field must not
//! be dropped silently. The same types read browser forms leniently.

use actix_web::dev::Payload;
use actix_web::{web, FromRequest, HttpRequest};
use futures_util::future::{FutureExt, LocalBoxFuture};
use serde::de::DeserializeOwned;
use serde_json::{Number, Value};

use crate::error::AppError;

/// A JSON body of type `T`, read as described in the module's documentation. The body's
/// size limit, content type check and the errors of unreadable JSON are
/// `web::JsonConfig`'s, as for `web::Json`.
pub struct JsonBody<T>(pub T);

impl<T: DeserializeOwned + 'static> FromRequest for JsonBody<T> {
    type Error = actix_web::Error;
    type Future = LocalBoxFuture<'static, Result<Self, Self::Error>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let value = web::Json::<Value>::from_request(req, payload);
        async move {
            let web::Json(value) = value.await?;
            let mut unknown = Vec::new();
            let read = |value: Value, unknown: &mut Vec<String>| {
                unknown.clear();
                serde_ignored::deserialize(value, |path| unknown.push(path.to_string()))
            };
            let body = match read(value.clone(), &mut unknown) {
                Ok(body) => body,
                Err(_) => {
                    let mut value = value;
                    integral_numbers_as_integers(&mut value);
                    read(value, &mut unknown)
                        .map_err(|e| AppError::BadRequest(format!("the JSON body could not be read: {e}")))?
                }
            };
            match unknown.first() {
                None => Ok(JsonBody(body)),
                Some(field) => {
                    Err(AppError::BadRequest(format!("the JSON body has an unknown field `{field}`")).into())
                }
            }
        }
        .boxed_local()
    }
}

/// Rewrites, everywhere in `value`, each float that is a whole number within `i64`'s
/// range (`6.0`, `-2e3`) as that integer.
fn integral_numbers_as_integers(value: &mut Value) {
    match value {
        Value::Number(n) if n.is_f64() => {
            let f = n.as_f64().unwrap_or(f64::NAN);
            // i64::MAX is not a float; 2^63 is the first float past it.
            if f.fract() == 0.0 && f >= i64::MIN as f64 && f < 9_223_372_036_854_775_808.0 {
                *n = Number::from(f as i64);
            }
        }
        Value::Array(items) => items.iter_mut().for_each(integral_numbers_as_integers),
        Value::Object(fields) => fields.values_mut().for_each(integral_numbers_as_integers),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;
    use serde_json::json;

    use super::*;

    #[test]
    fn a_whole_float_reads_as_an_integer_and_a_fraction_stays_a_float() {
        let mut value = json!({ "a": 6.0, "b": [-2e3, 0.5], "c": { "d": 1e300 }, "e": 7, "f": "8.0" });
        integral_numbers_as_integers(&mut value);
        assert_eq!(value, json!({ "a": 6, "b": [-2000, 0.5], "c": { "d": 1e300 }, "e": 7, "f": "8.0" }));
        assert!(value["a"].is_i64());
    }

    #[test]
    fn an_unknown_field_is_found_even_where_the_type_would_ignore_it() {
        #[derive(Deserialize)]
        #[allow(dead_code)]
        struct Body {
            name: String,
        }
        let mut unknown = Vec::new();
        let body = json!({ "name": "a", "nmae": "b" });
        let _: Body = serde_ignored::deserialize(body, |path| unknown.push(path.to_string())).unwrap();
        assert_eq!(unknown, ["nmae"]);
    }

    #[test]
    fn an_integer_field_takes_a_whole_float_and_refuses_a_fraction() {
        #[derive(Deserialize, Debug)]
        struct Body {
            n: i64,
        }
        let mut whole = json!({ "n": 140737488355328.0 });
        integral_numbers_as_integers(&mut whole);
        assert_eq!(Body::deserialize(whole).unwrap().n, 140_737_488_355_328);
        let mut fraction = json!({ "n": 1.5 });
        integral_numbers_as_integers(&mut fraction);
        assert!(Body::deserialize(fraction).is_err());
    }
}
