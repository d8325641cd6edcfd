//! The daemon's control socket, `state_dir/control.sock`: `converge trigger SERVICE` asks the
//! running daemon to reconcile a service now and waits for the result, as a Flux or Argo user
//! asks for a sync. Only root reaches it: `state_dir` is converge's own directory, mode 0700,
//! checked when the daemon starts, and the socket itself is 0600.
//!
//! One request and one answer per connection, each one line of JSON: `{"reconcile":"web"}`,
//! then `{"done":{"service":"web","result":{"kind":"converged"}}}` once a reconcile of `web`
//! that started after the request ended (or `{"unknown":{"service":"web"}}`). The request is
//! bounded (4 KiB, read within 5 s); the answer comes when the reconcile ends, however long
//! that takes: the client bounds its own wait.

use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::{mpsc, oneshot};

use super::view::ServiceResult;

/// The socket's name in `state_dir`.
pub const SOCKET: &str = "control.sock";
/// A request is a service name in a line of JSON.
const REQUEST_MAX: u64 = 4096;
const REQUEST_WITHIN: Duration = Duration::from_secs(5);
/// An answer is a result with its reason, which quotes a program's last lines: bounded by
/// what the daemon keeps of them.
const ANSWER_MAX: u64 = 1024 * 1024;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Request {
    /// Reconcile this service now.
    Reconcile(String),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Answer {
    /// A reconcile that started after the request ended so.
    Done {
        service: String,
        result: ServiceResult,
    },
    /// No such service is in force.
    Unknown { service: String },
}

/// A request taken off the socket, for the daemon's loop, with where its answer goes.
#[derive(Debug)]
pub struct Ask {
    pub service: String,
    pub reply: oneshot::Sender<Answer>,
}

/// The path of the socket for `state_dir`.
pub fn socket_path(state_dir: &Path) -> PathBuf {
    state_dir.join(SOCKET)
}

/// Listens on `state_dir/control.sock` (replacing a socket left by a daemon that died: the
/// caller holds the single-instance lock) and hands each request to `asks`. Ends when the
/// daemon drops its receiver.
pub fn listen(state_dir: &Path, asks: mpsc::UnboundedSender<Ask>) -> io::Result<ControlSocket> {
    let path = socket_path(state_dir);
    match std::fs::symlink_metadata(&path) {
        Ok(meta) if std::os::unix::fs::FileTypeExt::is_socket(&meta.file_type()) => {
            std::fs::remove_file(&path)?;
        }
        Ok(_) => {
            return Err(io::Error::other(format!(
                "{} exists and is not a socket: remove it",
                path.display()
            )));
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    let listener = UnixListener::bind(&path)?;
    std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o600))?;
    let task = tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            if asks.is_closed() {
                break;
            }
            let asks = asks.clone();
            tokio::spawn(async move {
                if let Err(e) = serve(stream, asks).await {
                    tracing::debug!("control socket: {e}");
                }
            });
        }
    });
    Ok(ControlSocket { path, task })
}

/// The listening socket; removed when stopped.
#[derive(Debug)]
pub struct ControlSocket {
    path: PathBuf,
    task: tokio::task::JoinHandle<()>,
}

impl ControlSocket {
    pub fn stop(self) {
        self.task.abort();
        let _ = std::fs::remove_file(&self.path);
    }
}

async fn serve(stream: UnixStream, asks: mpsc::UnboundedSender<Ask>) -> io::Result<()> {
    let (read, mut write) = stream.into_split();
    let mut line = String::new();
    let mut reader = BufReader::new(read.take(REQUEST_MAX));
    tokio::time::timeout(REQUEST_WITHIN, reader.read_line(&mut line))
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "no request in time"))??;
    let request: Request = serde_json::from_str(line.trim())
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
    let Request::Reconcile(service) = request;
    let (reply, answer) = oneshot::channel();
    asks.send(Ask { service, reply })
        .map_err(|_| io::Error::other("the daemon is stopping"))?;
    let answer = answer
        .await
        .map_err(|_| io::Error::other("the daemon stopped before the reconcile ended"))?;
    let mut text = serde_json::to_string(&answer).map_err(io::Error::other)?;
    text.push('\n');
    write.write_all(text.as_bytes()).await
}

/// Why a request could not be answered.
#[derive(Debug, thiserror::Error)]
pub enum AskError {
    /// No daemon listens (no socket, or nobody behind it).
    #[error("no daemon listens on {0}")]
    NoDaemon(PathBuf),
    #[error("no answer from the daemon within {}", humantime::format_duration(*.0))]
    Timeout(Duration),
    #[error("the daemon's control socket: {0}")]
    Io(#[from] io::Error),
}

/// Asks the daemon of `state_dir` to reconcile `service`, and waits for its answer at most
/// `within`.
pub async fn ask(state_dir: &Path, service: &str, within: Duration) -> Result<Answer, AskError> {
    let path = socket_path(state_dir);
    let stream = match UnixStream::connect(&path).await {
        Ok(stream) => stream,
        Err(e)
            if matches!(
                e.kind(),
                io::ErrorKind::NotFound | io::ErrorKind::ConnectionRefused
            ) =>
        {
            return Err(AskError::NoDaemon(path));
        }
        Err(e) => return Err(e.into()),
    };
    let exchange = async {
        let (read, mut write) = stream.into_split();
        let mut request = serde_json::to_string(&Request::Reconcile(service.to_string()))
            .map_err(io::Error::other)?;
        request.push('\n');
        write.write_all(request.as_bytes()).await?;
        let mut line = String::new();
        BufReader::new(read.take(ANSWER_MAX))
            .read_line(&mut line)
            .await?;
        serde_json::from_str::<Answer>(line.trim())
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
    };
    match tokio::time::timeout(within, exchange).await {
        Ok(answer) => Ok(answer?),
        Err(_) => Err(AskError::Timeout(within)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_and_answers_are_one_line_of_tagged_json() {
        let request = serde_json::to_string(&Request::Reconcile("web".into())).expect("json");
        assert_eq!(request, r#"{"reconcile":"web"}"#);
        let answer = serde_json::to_string(&Answer::Done {
            service: "web".into(),
            result: ServiceResult::Converged,
        })
        .expect("json");
        assert_eq!(
            answer,
            r#"{"done":{"service":"web","result":{"kind":"converged"}}}"#
        );
    }

    #[tokio::test]
    async fn an_ask_reaches_the_daemon_and_its_answer_comes_back() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (tx, mut rx) = mpsc::unbounded_channel::<Ask>();
        let socket = listen(dir.path(), tx).expect("listen");
        let mode = std::os::unix::fs::PermissionsExt::mode(
            &std::fs::metadata(socket_path(dir.path()))
                .expect("socket")
                .permissions(),
        );
        assert_eq!(mode & 0o777, 0o600);
        let daemon = tokio::spawn(async move {
            let ask = rx.recv().await.expect("an ask");
            let answer = if ask.service == "web" {
                Answer::Done {
                    service: ask.service,
                    result: ServiceResult::Blocked {
                        reason: "peer Primary".into(),
                    },
                }
            } else {
                Answer::Unknown {
                    service: ask.service,
                }
            };
            let _ = ask.reply.send(answer);
        });
        let answer = ask(dir.path(), "web", Duration::from_secs(5))
            .await
            .expect("answer");
        assert_eq!(
            answer,
            Answer::Done {
                service: "web".into(),
                result: ServiceResult::Blocked {
                    reason: "peer Primary".into()
                }
            }
        );
        daemon.await.expect("daemon");
        socket.stop();
        assert!(matches!(
            ask(dir.path(), "web", Duration::from_secs(1)).await,
            Err(AskError::NoDaemon(_))
        ));
    }
}
