//! One error type for the whole engine; every message is a single line a user can act on.

use std::fmt;

#[derive(Debug, Clone, PartialEq)]
pub enum Error {
    /// Shapes that do not fit, naming the op or layer and both shapes.
    Shape(String),
    /// An argument outside what the op or layer accepts.
    Invalid(String),
    /// A file that cannot be read or written; `path` is what the user gave.
    Io { path: String, message: String },
    /// A file that was read but does not hold what was expected.
    Format { path: String, message: String },
    /// A configuration key or value that is wrong.
    Config(String),
    /// Data that cannot be trained on (NaN, wrong labels, ...).
    Data(String),
    /// Training stopped before its end (a signal, or the loss became NaN), saying where and what was kept.
    Stopped(String),
    /// A device (a GPU) that cannot be used: no driver, no device, a library missing, a kernel that failed.
    Device(String),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Shape(m) => write!(f, "shape error: {m}"),
            Error::Invalid(m) => write!(f, "invalid argument: {m}"),
            Error::Io { path, message } => write!(f, "{path}: {message}"),
            Error::Format { path, message } => write!(f, "{path}: {message}"),
            Error::Config(m) => write!(f, "config error: {m}"),
            Error::Data(m) => write!(f, "data error: {m}"),
            Error::Stopped(m) => write!(f, "training stopped: {m}"),
            Error::Device(m) => write!(f, "device error: {m}"),
        }
    }
}

impl std::error::Error for Error {}

impl Error {
    pub fn io(path: impl AsRef<std::path::Path>, err: &std::io::Error) -> Error {
        let message = match err.kind() {
            std::io::ErrorKind::NotFound => "no such file or directory".to_string(),
            std::io::ErrorKind::PermissionDenied => "permission denied".to_string(),
            _ => err.to_string(),
        };
        Error::Io { path: path.as_ref().display().to_string(), message }
    }

    pub fn format(path: impl AsRef<std::path::Path>, message: impl Into<String>) -> Error {
        Error::Format { path: path.as_ref().display().to_string(), message: message.into() }
    }
}

pub type Result<T> = std::result::Result<T, Error>;

/// Shorthand for returning a shape error with a formatted message.
#[macro_export]
macro_rules! shape_err {
    ($($arg:tt)*) => { return Err($crate::Error::Shape(format!($($arg)*))) };
}
