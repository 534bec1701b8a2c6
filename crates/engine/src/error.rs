use std::path::PathBuf;

/// Errors from the engine, each naming the file or value at fault.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// A data file is absent; the message says how to fetch it.
    #[error("{path}: not found; fetch the data sets with `scripts/bootstrap.sh data`")]
    MissingData { path: PathBuf },
    /// A data file exists but does not parse.
    #[error("{path}: {reason}; delete it and run `scripts/bootstrap.sh data` again")]
    BadData { path: PathBuf, reason: String },
    /// Reading a file failed.
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A bundle folder is incomplete or inconsistent.
    #[error("{path}: {reason}")]
    BadBundle { path: PathBuf, reason: String },
    /// Text could not be tokenized.
    #[error("tokenizer: {0}")]
    Tokenize(String),
    /// An argument is outside what the callee accepts (a shape, an index, a fraction).
    #[error("invalid input: {0}")]
    InvalidInput(String),
    /// libtorch reported an error.
    #[error(transparent)]
    Torch(#[from] tch::TchError),
}

/// Engine result.
pub type Result<T> = std::result::Result<T, EngineError>;
