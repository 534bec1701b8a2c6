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
    /// libtorch reported an error.
    #[error(transparent)]
    Torch(#[from] tch::TchError),
}

/// Engine result.
pub type Result<T> = std::result::Result<T, EngineError>;
