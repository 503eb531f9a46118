//! Error helpers shared by every entry point.

/// `outer: inner: innermost`, so a log line or a CLI message never hides the cause of a
/// failure behind its context.
pub fn error_chain(err: &dyn std::error::Error) -> String {
    let mut message = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        message.push_str(": ");
        message.push_str(&cause.to_string());
        source = cause.source();
    }
    message
}
