use dbus::Message;
use dbus::nonblock::{MsgMatch, SyncConnection};
use futures::Stream;
use futures::channel::mpsc::UnboundedReceiver;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

/// Wrapper for a stream of D-Bus messages which automatically removes the `MsgMatch` from the D-Bus
/// connection when it is dropped.
pub struct MessageStream {
    msg_match: Option<MsgMatch>,
    events: UnboundedReceiver<Message>,
    connection: Arc<SyncConnection>,
}

impl MessageStream {
    pub fn new(msg_match: MsgMatch, connection: Arc<SyncConnection>) -> Self {
        let (msg_match, events) = msg_match.msg_stream();
        Self {
            msg_match: Some(msg_match),
            events,
            connection,
        }
    }
}

impl Stream for MessageStream {
    type Item = Message;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        Pin::new(&mut self.events).poll_next(cx)
    }
}

impl Drop for MessageStream {
    fn drop(&mut self) {
        // VectorCare patch (vendor/README.md): upstream spawned `remove_match(..).await.unwrap()`,
        // which panics when dbus already dropped the match (a matching signal arrived after the
        // receiver closed, or was being dispatched right then) or the bus connection is gone,
        // and `tokio::spawn` panics when dropped outside a runtime. A match that is already gone
        // needs no removal, so failures are logged, not unwrapped.
        let (Some(msg_match), Ok(runtime)) = (
            self.msg_match.take(),
            tokio::runtime::Handle::try_current(),
        ) else {
            return;
        };
        let connection = self.connection.clone();
        runtime.spawn(async move {
            if let Err(e) = connection.remove_match(msg_match.token()).await {
                log::debug!("Removing D-Bus match of a dropped stream: {}", e);
            }
        });
    }
}
