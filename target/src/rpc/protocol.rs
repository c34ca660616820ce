//! JSON-RPC 2.0 as the management socket speaks it: a request object, the error codes of the
//! specification, the response objects, and typed params whose errors name the field. A leaf,
//! so that the methods and the server both build on it.

use serde::de::DeserializeOwned;
use serde_json::{json, Map, Value};

/// Invalid JSON was received.
pub const PARSE_ERROR: i64 = -32700;
/// The JSON sent is not a valid request object.
pub const INVALID_REQUEST: i64 = -32600;
pub const METHOD_NOT_FOUND: i64 = -32601;
pub const INVALID_PARAMS: i64 = -32602;
/// The method was valid but could not be carried out (as SPDK's -32603 for a failed action).
pub const INTERNAL_ERROR: i64 = -32603;

/// A JSON-RPC error: its code and a message that says what to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RpcError {
    pub code: i64,
    pub message: String,
}

impl RpcError {
    pub fn new(code: i64, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }

    pub fn invalid_params(message: impl Into<String>) -> Self {
        Self::new(INVALID_PARAMS, message)
    }
}

/// A request: what to call, with what, and the id to answer (`None`: a notification, which
/// gets no answer).
#[derive(Debug)]
pub struct Request {
    pub id: Option<Value>,
    pub method: String,
    /// An object; absent params are an empty one.
    pub params: Value,
}

impl Request {
    /// The request `value`, or the error to answer (with the id, when there is one).
    pub fn parse(value: Value) -> Result<Self, (Value, RpcError)> {
        let Value::Object(mut object) = value else {
            let what = if value.is_array() {
                "batch requests are not supported; send one request object at a time"
            } else {
                "a request is a JSON object"
            };
            return Err((Value::Null, RpcError::new(INVALID_REQUEST, what)));
        };
        let id = object.remove("id");
        let reply_id = id.clone().unwrap_or(Value::Null);
        let invalid = |message: &str| (reply_id.clone(), RpcError::new(INVALID_REQUEST, message));
        if object.get("jsonrpc").and_then(Value::as_str) != Some("2.0") {
            return Err(invalid("\"jsonrpc\": \"2.0\" is missing"));
        }
        let method = match object.remove("method") {
            Some(Value::String(method)) => method,
            _ => return Err(invalid("\"method\" is missing or not a string")),
        };
        let params = match object.remove("params") {
            None | Some(Value::Null) => Value::Object(Map::new()),
            Some(params @ Value::Object(_)) => params,
            Some(_) => {
                return Err((
                    reply_id,
                    RpcError::invalid_params("params must be an object (named parameters)"),
                ))
            }
        };
        Ok(Self { id, method, params })
    }
}

/// Typed params: `T` from the params object; an error names the field, as
/// `params.nqn: invalid type: integer `1`, expected a string`.
pub fn params<T: DeserializeOwned>(params: Value) -> Result<T, RpcError> {
    serde_path_to_error::deserialize(params).map_err(|error| {
        let path = error.path().to_string();
        let inner = error.into_inner();
        if path == "." {
            RpcError::invalid_params(format!("params: {inner}"))
        } else {
            RpcError::invalid_params(format!("params.{path}: {inner}"))
        }
    })
}

/// The answer to request `id`.
pub fn response(id: Value, outcome: Result<Value, RpcError>) -> Value {
    match outcome {
        Ok(result) => json!({"jsonrpc": "2.0", "id": id, "result": result}),
        Err(error) => json!({
            "jsonrpc": "2.0",
            "id": id,
            "error": {"code": error.code, "message": error.message},
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Deserialize, Debug)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Named {
        nqn: String,
        allow_any_host: Option<bool>,
    }

    #[test]
    fn requests_are_checked() {
        let request = Request::parse(json!({"jsonrpc": "2.0", "id": 7, "method": "m"})).unwrap();
        assert_eq!((request.id, request.method.as_str()), (Some(json!(7)), "m"));
        assert_eq!(request.params, json!({}));
        let notification = Request::parse(json!({"jsonrpc": "2.0", "method": "m"})).unwrap();
        assert_eq!(notification.id, None);
        let (id, error) = Request::parse(json!({"id": 3, "method": "m"})).unwrap_err();
        assert_eq!((id, error.code), (json!(3), INVALID_REQUEST));
        let (_, error) = Request::parse(json!([{"jsonrpc": "2.0"}])).unwrap_err();
        assert!(error.message.contains("batch"), "{error:?}");
        let (_, error) =
            Request::parse(json!({"jsonrpc": "2.0", "id": 1, "method": "m", "params": [1]}))
                .unwrap_err();
        assert_eq!(error.code, INVALID_PARAMS);
    }

    #[test]
    fn params_errors_name_the_field() {
        let wrong_type = params::<Named>(json!({"nqn": 1})).unwrap_err();
        assert_eq!(wrong_type.code, INVALID_PARAMS);
        assert!(
            wrong_type.message.starts_with("params.nqn: invalid type"),
            "{wrong_type:?}"
        );
        let missing = params::<Named>(json!({})).unwrap_err();
        assert_eq!(missing.message, "params: missing field `nqn`");
        let unknown = params::<Named>(json!({"nqn": "x", "bogus": 1})).unwrap_err();
        assert!(
            unknown.message.contains("unknown field `bogus`"),
            "{unknown:?}"
        );
        let nested = params::<Named>(json!({"nqn": "x", "allow_any_host": "yes"})).unwrap_err();
        assert!(nested.message.starts_with("params.allow_any_host: "));
    }
}
