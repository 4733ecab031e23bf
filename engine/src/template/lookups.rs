//! `{{ var.value.x }}`, `{{ var.json.x }}`, `{{ var.value.get('x', 'fallback') }}` and `{{ conn.x.host }}` in
//! templates. Rendering is synchronous but variables and connections live in the engine, so a render records
//! the names it could not answer ([`Lookups::take_wanted`]); the caller fetches them and renders again (a
//! bounded number of rounds), as Airflow fetches them lazily. A name the engine does not know fails the render
//! naming it ([`Lookups::missing`]) instead of rendering an empty string.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex};

use minijinja::value::{Object, Value};
use serde_json::Value as Json;

use crate::secrets::Connection;

/// A name a template asked for.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Wanted {
    Variable(String),
    Connection(String),
}

impl std::fmt::Display for Wanted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Wanted::Variable(key) => write!(f, "variable `{key}`"),
            Wanted::Connection(id) => write!(f, "connection `{id}`"),
        }
    }
}

#[derive(Default)]
struct Inner {
    /// Known variables: `None` = the engine has none by that key.
    variables: HashMap<String, Option<String>>,
    connections: HashMap<String, Option<Json>>,
    wanted: BTreeSet<Wanted>,
    /// Names that failed the render, with why.
    missing: BTreeMap<Wanted, String>,
}

/// Variables and connections known to a render, and those it asked for. Cheap to clone (shared).
#[derive(Clone, Default)]
pub struct Lookups {
    inner: Arc<Mutex<Inner>>,
}

impl std::fmt::Debug for Lookups {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Lookups")
    }
}

impl Lookups {
    fn with<T>(&self, f: impl FnOnce(&mut Inner) -> T) -> T {
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut inner)
    }

    /// The names the last render asked for and did not have (cleared).
    pub fn take_wanted(&self) -> Vec<Wanted> {
        self.with(|i| std::mem::take(&mut i.wanted).into_iter().collect())
    }

    /// Names that do not exist (or could not be read as asked), with why; cleared with each render.
    pub fn missing(&self) -> Vec<(Wanted, String)> {
        self.with(|i| i.missing.iter().map(|(w, why)| (w.clone(), why.clone())).collect())
    }

    pub(super) fn start_render(&self) {
        self.with(|i| {
            i.wanted.clear();
            i.missing.clear();
        })
    }

    /// What the engine answered for a variable (`None`: there is none).
    pub fn set_variable(&self, key: &str, value: Option<String>) {
        self.with(|i| i.variables.insert(key.to_string(), value));
    }

    /// What the engine answered for a connection (`None`: there is none).
    pub fn set_connection(&self, conn_id: &str, conn: Option<&Connection>) {
        let value = conn.map(|c| {
            let mut map = serde_json::to_value(c).unwrap_or(Json::Null);
            if let Json::Object(m) = &mut map {
                m.insert("extra_dejson".into(), c.extra_dejson());
                // The JSON-RPC URL of an `ethereum` connection (`url: "{{ conn.sepolia.rpc_url }}"` on a
                // `chain.*` operator): from any connection with a host or an `extra.url`.
                if let Ok(url) = c.rpc_url() {
                    m.insert("rpc_url".into(), Json::String(url));
                }
            }
            map
        });
        self.with(|i| i.connections.insert(conn_id.to_string(), value));
    }

    /// What a render gets for `wanted`, from `known` (None: not fetched yet; Some(None): the engine has none;
    /// Some(Some(the value, or why it cannot be used))): the value, a [`Pending`] placeholder (the name kept for
    /// the next round), or nothing (recorded as missing, with why).
    fn answer(
        &self,
        wanted: Wanted,
        known: impl FnOnce(&Inner) -> Option<Option<Result<Value, String>>>,
    ) -> Option<Value> {
        self.with(|i| match known(i) {
            None => {
                i.wanted.insert(wanted);
                Some(Value::from_object(Pending))
            }
            Some(None) => {
                i.missing.insert(wanted, "does not exist".into());
                None
            }
            Some(Some(Ok(value))) => Some(value),
            Some(Some(Err(why))) => {
                i.missing.insert(wanted, why);
                None
            }
        })
    }

    fn variable(&self, key: &str, json: bool) -> Option<Value> {
        self.answer(Wanted::Variable(key.to_string()), |i| {
            i.variables.get(key).map(|known| {
                known.as_ref().map(|text| {
                    if json {
                        serde_json::from_str::<Json>(text)
                            .map(|value| Value::from_serialize(&value))
                            .map_err(|err| format!("is not JSON ({err})"))
                    } else {
                        Ok(Value::from(text.clone()))
                    }
                })
            })
        })
    }

    fn connection(&self, conn_id: &str) -> Option<Value> {
        self.answer(Wanted::Connection(conn_id.to_string()), |i| {
            i.connections
                .get(conn_id)
                .map(|known| known.as_ref().map(|value| Ok(Value::from_serialize(value))))
        })
    }

    /// `var` in the template context.
    pub(super) fn var_value(&self) -> Value {
        let mut var = BTreeMap::new();
        var.insert(
            "value",
            Value::from_object(Variables {
                lookups: self.clone(),
                json: false,
            }),
        );
        var.insert(
            "json",
            Value::from_object(Variables {
                lookups: self.clone(),
                json: true,
            }),
        );
        Value::from(var)
    }

    /// `conn` in the template context.
    pub(super) fn conn_value(&self) -> Value {
        Value::from_object(Connections { lookups: self.clone() })
    }
}

/// What an unknown variable or connection is in a discovery round: anything asked of it is itself, and it
/// renders as nothing, so one round finds every name a template uses (its output is thrown away).
#[derive(Debug)]
struct Pending;

impl Object for Pending {
    fn repr(self: &Arc<Self>) -> minijinja::value::ObjectRepr {
        minijinja::value::ObjectRepr::Plain
    }

    fn get_value(self: &Arc<Self>, _key: &Value) -> Option<Value> {
        Some(Value::from_object(Pending))
    }

    fn is_true(self: &Arc<Self>) -> bool {
        false
    }

    fn call_method(
        self: &Arc<Self>,
        _state: &minijinja::State<'_, '_>,
        _method: &str,
        _args: &[Value],
    ) -> Result<Value, minijinja::Error> {
        Ok(Value::from_object(Pending))
    }

    fn render(self: &Arc<Self>, _f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        Ok(())
    }
}

/// `var.value` / `var.json`.
#[derive(Debug)]
struct Variables {
    lookups: Lookups,
    json: bool,
}

impl Object for Variables {
    fn get_value(self: &Arc<Self>, key: &Value) -> Option<Value> {
        self.lookups.variable(key.as_str()?, self.json)
    }

    fn call_method(
        self: &Arc<Self>,
        _state: &minijinja::State<'_, '_>,
        method: &str,
        args: &[Value],
    ) -> Result<Value, minijinja::Error> {
        if method != "get" {
            return Err(minijinja::Error::from(minijinja::ErrorKind::UnknownMethod));
        }
        let (key, fallback): (&str, Option<Value>) = minijinja::value::from_args(args)?;
        let known = self.lookups.with(|i| i.variables.get(key).cloned());
        match known {
            // Not asked yet: the fallback for now, the real value in the next round.
            None => {
                self.lookups
                    .with(|i| i.wanted.insert(Wanted::Variable(key.to_string())));
                Ok(fallback.unwrap_or(Value::from(())))
            }
            Some(None) => Ok(fallback.unwrap_or(Value::from(()))),
            Some(Some(_)) => Ok(self.lookups.variable(key, self.json).unwrap_or(Value::from(()))),
        }
    }
}

/// `conn`.
#[derive(Debug)]
struct Connections {
    lookups: Lookups,
}

impl Object for Connections {
    fn get_value(self: &Arc<Self>, key: &Value) -> Option<Value> {
        self.lookups.connection(key.as_str()?)
    }

    fn call_method(
        self: &Arc<Self>,
        _state: &minijinja::State<'_, '_>,
        method: &str,
        args: &[Value],
    ) -> Result<Value, minijinja::Error> {
        if method != "get" {
            return Err(minijinja::Error::from(minijinja::ErrorKind::UnknownMethod));
        }
        let (conn_id,): (&str,) = minijinja::value::from_args(args)?;
        Ok(self.lookups.connection(conn_id).unwrap_or(Value::from(())))
    }
}
