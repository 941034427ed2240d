//! JSON:API documents: tolerant decoding of what clients send (pytfe sends
//! `type` inside attributes, empty `vcs-repo` objects, plain JSON bodies on
//! actions), strict encoding of what they expect, and pagination.

use serde_json::{json, Map, Value};

use crate::errors::ApiError;

/// A parsed request body: `None` when empty.
pub struct Body(Option<Value>);

impl Body {
    /// Malformed JSON is a 400 that changes nothing.
    pub fn parse(bytes: &[u8]) -> Result<Self, ApiError> {
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(Body(None));
        }
        serde_json::from_slice(bytes)
            .map(|v| Body(Some(v)))
            .map_err(|e| ApiError::bad_request(format!("the request body is not valid JSON: {e}")))
    }

    /// The primary resource object, whose `type` must be one of `types`.
    pub fn data(&self, types: &[&str]) -> Result<Data<'_>, ApiError> {
        let Some(doc) = &self.0 else {
            return Err(ApiError::unprocessable(
                "the request needs a JSON:API document with a `data` object",
            ));
        };
        let data = doc.get("data").and_then(Value::as_object).ok_or_else(|| {
            ApiError::unprocessable("the request needs a JSON:API document with a `data` object")
        })?;
        let kind = data.get("type").and_then(Value::as_str).unwrap_or("");
        if !types.contains(&kind) {
            return Err(ApiError::new(
                hyper::StatusCode::CONFLICT,
                format!(
                    "the resource type {kind:?} does not belong here; expected {}",
                    types
                        .iter()
                        .map(|t| format!("{t:?}"))
                        .collect::<Vec<_>>()
                        .join(" or ")
                ),
            ));
        }
        Ok(Data {
            attrs: data.get("attributes").and_then(Value::as_object),
            rels: data.get("relationships").and_then(Value::as_object),
        })
    }

    /// The attributes of an optional `data` object of any type (action
    /// endpoints accept no body, plain JSON, or `{"data":{"type":""}}`).
    pub fn loose(&self) -> Data<'_> {
        let data = self
            .0
            .as_ref()
            .and_then(|d| d.get("data"))
            .and_then(Value::as_object);
        Data {
            attrs: data
                .and_then(|d| d.get("attributes"))
                .and_then(Value::as_object)
                .or_else(|| self.0.as_ref().and_then(Value::as_object)),
            rels: data
                .and_then(|d| d.get("relationships"))
                .and_then(Value::as_object),
        }
    }
}

/// Attributes and relationships of a resource object, with typed getters
/// that refuse values of the wrong JSON type (422).
pub struct Data<'a> {
    attrs: Option<&'a Map<String, Value>>,
    rels: Option<&'a Map<String, Value>>,
}

fn wrong_type(key: &str, want: &str) -> ApiError {
    ApiError::unprocessable(format!("attribute `{key}` must be {want}"))
}

impl Data<'_> {
    fn attr(&self, key: &str) -> Option<&Value> {
        self.attrs.and_then(|a| a.get(key)).filter(|v| !v.is_null())
    }

    pub fn has(&self, key: &str) -> bool {
        self.attr(key).is_some()
    }

    pub fn str(&self, key: &str) -> Result<Option<String>, ApiError> {
        match self.attr(key) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(_) => Err(wrong_type(key, "a string")),
        }
    }

    pub fn bool(&self, key: &str) -> Result<Option<bool>, ApiError> {
        match self.attr(key) {
            None => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(*b)),
            Some(_) => Err(wrong_type(key, "true or false")),
        }
    }

    pub fn i64(&self, key: &str) -> Result<Option<i64>, ApiError> {
        match self.attr(key) {
            None => Ok(None),
            Some(v) => v
                .as_i64()
                .map(Some)
                .ok_or_else(|| wrong_type(key, "an integer")),
        }
    }

    pub fn str_list(&self, key: &str) -> Result<Option<Vec<String>>, ApiError> {
        match self.attr(key) {
            None => Ok(None),
            Some(Value::Array(items)) => items
                .iter()
                .map(|i| {
                    i.as_str()
                        .map(str::to_string)
                        .ok_or_else(|| wrong_type(key, "a list of strings"))
                })
                .collect::<Result<Vec<_>, _>>()
                .map(Some),
            Some(_) => Err(wrong_type(key, "a list of strings")),
        }
    }

    /// An object of string values, as labels (e.g. `agent-selector`).
    pub fn labels(&self, key: &str) -> Result<Option<otf_core::labels::Labels>, ApiError> {
        let expected = "an object of string values, like {\"region\": \"eu\"}";
        match self.attr(key) {
            None => Ok(None),
            Some(Value::Object(map)) => {
                let pairs = map
                    .iter()
                    .map(|(k, v)| {
                        v.as_str()
                            .map(|v| (k.clone(), v.to_string()))
                            .ok_or_else(|| wrong_type(key, expected))
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                otf_core::labels::Labels::from_pairs(pairs)
                    .map(Some)
                    .map_err(|e| ApiError::unprocessable(format!("attribute `{key}`: {e}")))
            }
            Some(_) => Err(wrong_type(key, expected)),
        }
    }

    fn rel_data(&self, name: &str) -> Option<&Value> {
        self.rels
            .and_then(|r| r.get(name))
            .and_then(|r| r.get("data"))
    }

    /// `relationships.<name>.data.id`; None when absent or null.
    pub fn rel_id(&self, name: &str) -> Result<Option<String>, ApiError> {
        match self.rel_data(name) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Object(o)) => match o.get("id") {
                Some(Value::String(s)) => Ok(Some(s.clone())),
                _ => Err(ApiError::unprocessable(format!(
                    "relationship `{name}` needs an `id` string"
                ))),
            },
            Some(_) => Err(ApiError::unprocessable(format!(
                "relationship `{name}` must be a single resource identifier"
            ))),
        }
    }

    /// The ids of a to-many relationship; None when absent.
    pub fn rel_ids(&self, name: &str) -> Result<Option<Vec<String>>, ApiError> {
        match self.rel_data(name) {
            None => Ok(None),
            Some(Value::Null) => Ok(Some(Vec::new())),
            Some(Value::Array(items)) => items
                .iter()
                .map(|i| {
                    i.get("id")
                        .and_then(Value::as_str)
                        .map(str::to_string)
                        .ok_or_else(|| {
                            ApiError::unprocessable(format!(
                                "relationship `{name}` needs `id` strings"
                            ))
                        })
                })
                .collect::<Result<Vec<_>, _>>()
                .map(Some),
            Some(_) => Err(ApiError::unprocessable(format!(
                "relationship `{name}` must be a list of resource identifiers"
            ))),
        }
    }
}

/// A resource object.
pub fn resource(kind: &str, id: &str, attributes: Value, relationships: Value) -> Value {
    let mut r = json!({ "id": id, "type": kind, "attributes": attributes });
    if relationships.as_object().is_some_and(|o| !o.is_empty()) {
        r["relationships"] = relationships;
    }
    r
}

/// A to-one relationship.
pub fn rel_one(kind: &str, id: Option<&str>) -> Value {
    match id {
        Some(id) => json!({ "data": { "type": kind, "id": id } }),
        None => json!({ "data": null }),
    }
}

/// A to-many relationship.
pub fn rel_many<'a>(kind: &str, ids: impl IntoIterator<Item = &'a str>) -> Value {
    let data: Vec<Value> = ids
        .into_iter()
        .map(|id| json!({ "type": kind, "id": id }))
        .collect();
    json!({ "data": data })
}

/// A document with one primary resource.
pub fn one(resource: Value) -> Value {
    json!({ "data": resource })
}

/// A page request: `page[number]` from 1, `page[size]` 1..=100 (default 20).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Page {
    pub number: u64,
    pub size: u64,
}

impl Page {
    /// The page a request's query asks for (`query` gives a parameter).
    pub fn from_query<'a>(query: impl Fn(&str) -> Option<&'a str>) -> Result<Page, ApiError> {
        let parse = |key: &str, default: u64| -> Result<u64, ApiError> {
            match query(key) {
                None | Some("") => Ok(default),
                Some(v) => v.parse::<u64>().map_err(|_| {
                    ApiError::unprocessable(format!("{key} must be a positive integer"))
                }),
            }
        };
        let number = parse("page[number]", 1)?.max(1);
        let size = parse("page[size]", 20)?.clamp(1, 100);
        Ok(Page { number, size })
    }

    /// Items before this page; saturates for absurd page numbers (which
    /// then give an empty page, never an overflow).
    pub fn offset(&self) -> u64 {
        self.number.saturating_sub(1).saturating_mul(self.size)
    }

    /// This page of `items`.
    pub fn slice<T>(&self, items: Vec<T>) -> (Vec<T>, u64) {
        let total = items.len() as u64;
        let page = items
            .into_iter()
            .skip(usize::try_from(self.offset()).unwrap_or(usize::MAX))
            .take(self.size as usize)
            .collect();
        (page, total)
    }

    pub fn meta(&self, total: u64) -> Value {
        let pages = total.div_ceil(self.size).max(1);
        json!({ "pagination": {
            "current-page": self.number,
            "page-size": self.size,
            "prev-page": if self.number > 1 { json!(self.number - 1) } else { Value::Null },
            "next-page": if self.number < pages { json!(self.number.saturating_add(1)) } else { Value::Null },
            "total-pages": pages,
            "total-count": total,
        }})
    }
}

/// A list document with pagination.
pub fn many(resources: Vec<Value>, page: Page, total: u64) -> Value {
    json!({ "data": resources, "meta": page.meta(total) })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn absurd_pages_neither_overflow_nor_panic() {
        let page = Page {
            number: u64::MAX,
            size: 100,
        };
        assert_eq!(page.offset(), u64::MAX);
        let (items, total) = page.slice(vec![1, 2, 3]);
        assert!(items.is_empty());
        assert_eq!(total, 3);
        let meta = page.meta(3);
        assert_eq!(meta["pagination"]["next-page"], Value::Null);
        assert_eq!(meta["pagination"]["prev-page"], json!(u64::MAX - 1));
        let first = Page {
            number: 1,
            size: 20,
        };
        assert_eq!(first.offset(), 0);
        assert_eq!(first.meta(41)["pagination"]["total-pages"], json!(3));
    }
}
