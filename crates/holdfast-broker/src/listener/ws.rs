//! MQTT over WebSocket [MQTT-6.0.0]: the HTTP upgrade on the configured path with the `mqtt`
//! subprotocol, then an `AsyncRead + AsyncWrite` over binary frames, so the connection task sees a
//! byte stream: packets may span frames and a frame may hold several packets.

use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use bytes::{Buf, Bytes};
use futures_util::{Sink, Stream};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tokio_tungstenite::tungstenite::http::{HeaderValue, StatusCode};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use tokio_tungstenite::WebSocketStream;

/// Largest WebSocket write buffer before writes fail (a client that never reads).
const MAX_WRITE_BUFFER: usize = 4 * 1024 * 1024;

/// Performs the server side of the upgrade. `max_message` bounds one WebSocket message.
// The handshake callback's error type (an HTTP response) is tungstenite's, large as it is.
#[allow(clippy::result_large_err)]
pub async fn accept<S>(stream: S, path: &str, max_message: usize) -> Result<WsIo<S>, WsError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let path = path.to_string();
    let callback = move |req: &Request, mut resp: Response| {
        if req.uri().path() != path {
            return Err(error_response(
                StatusCode::NOT_FOUND,
                "no MQTT endpoint here",
            ));
        }
        if let Some(offered) = req.headers().get("Sec-WebSocket-Protocol") {
            let offered = offered.to_str().unwrap_or("");
            let pick = offered
                .split(',')
                .map(str::trim)
                .find(|p| p.eq_ignore_ascii_case("mqtt") || p.eq_ignore_ascii_case("mqttv3.1"));
            match pick {
                Some(p) => {
                    let value = HeaderValue::from_str(p).expect("a token is a header value");
                    resp.headers_mut().insert("Sec-WebSocket-Protocol", value);
                }
                None => {
                    return Err(error_response(
                        StatusCode::BAD_REQUEST,
                        "subprotocol must be mqtt",
                    ))
                }
            }
        }
        Ok(resp)
    };
    let cfg = WebSocketConfig {
        max_message_size: Some(max_message),
        max_frame_size: Some(max_message),
        max_write_buffer_size: MAX_WRITE_BUFFER,
        ..WebSocketConfig::default()
    };
    let ws = tokio_tungstenite::accept_hdr_async_with_config(stream, callback, Some(cfg)).await?;
    Ok(WsIo {
        ws,
        read: Bytes::new(),
    })
}

fn error_response(status: StatusCode, body: &str) -> ErrorResponse {
    let mut r = ErrorResponse::new(Some(body.to_string()));
    *r.status_mut() = status;
    r
}

/// A WebSocket connection seen as a byte stream of binary frames.
pub struct WsIo<S> {
    ws: WebSocketStream<S>,
    read: Bytes,
}

fn io_error(e: WsError) -> io::Error {
    match e {
        WsError::Io(e) => e,
        other => io::Error::other(other),
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncRead for WsIo<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        loop {
            if !this.read.is_empty() {
                let n = buf.remaining().min(this.read.len());
                buf.put_slice(&this.read[..n]);
                this.read.advance(n);
                return Poll::Ready(Ok(()));
            }
            // Writes (ours, and pongs) go out even while the connection task only waits to read.
            let _ = Pin::new(&mut this.ws).poll_flush(cx);
            match ready!(Pin::new(&mut this.ws).poll_next(cx)) {
                None | Some(Ok(Message::Close(_))) => return Poll::Ready(Ok(())),
                Some(Ok(Message::Binary(b))) => this.read = Bytes::from(b),
                Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => {}
                // MQTT control packets go in binary frames only [MQTT-6.0.0-1].
                Some(Ok(Message::Text(_))) => {
                    return Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        "text WebSocket frame",
                    )))
                }
                Some(Err(WsError::ConnectionClosed | WsError::AlreadyClosed)) => {
                    return Poll::Ready(Ok(()))
                }
                Some(Err(e)) => return Poll::Ready(Err(io_error(e))),
            }
        }
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncWrite for WsIo<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        ready!(Pin::new(&mut this.ws).poll_ready(cx)).map_err(io_error)?;
        Pin::new(&mut this.ws)
            .start_send(Message::Binary(buf.to_vec()))
            .map_err(io_error)?;
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().ws)
            .poll_flush(cx)
            .map_err(io_error)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match ready!(Pin::new(&mut self.get_mut().ws).poll_close(cx)) {
            Ok(()) | Err(WsError::ConnectionClosed | WsError::AlreadyClosed) => Poll::Ready(Ok(())),
            Err(e) => Poll::Ready(Err(io_error(e))),
        }
    }
}
