//! `wasi:io/poll` and `wasi:io/streams`, aware of the job's deadline and its
//! cancellation, as the job's clock is (`super::clocks`).
//!
//! A blocking call waits inside the host, where the epoch interrupt does
//! not reach. WASI's own implementation waits for as long as the stream
//! or pollable takes, and some never become ready: an outgoing request's
//! body holds two writes until the request is handed to
//! `wasi:http/outgoing-handler`, so a plugin that writes a third before
//! sending (an easy order to write by mistake) would block its thread past
//! every deadline, cancel and shutdown. Here each wait ends at the job's
//! deadline or cancel with a trap that [`TIME_UP`] names, and the job
//! reports it as a timeout or a cancel. Everything that does not wait is
//! WASI's own implementation, unchanged.

use super::JobState;
use std::future::Future;
use std::time::Instant;
use tokio_util::sync::CancellationToken;
use wasmtime::component::Resource;
use wasmtime_wasi::p2::bindings::io::{poll as async_poll, streams as async_streams};
use wasmtime_wasi::p2::bindings::sync::io::{poll, streams};
use wasmtime_wasi::p2::{DynInputStream, DynOutputStream, DynPollable, StreamError, StreamResult};
use wasmtime_wasi::runtime::in_tokio;

/// The trap a wait ends with when the job's time is up or it is cancelled.
pub(super) const TIME_UP: &str = "the job's time ran out while the plugin waited in the host";

/// Run `wait` to its end, or to the job's deadline or cancel, whichever
/// comes first. A wait that is ready at once completes even when the time
/// is already up: what the plugin did is done, and the job stops at its
/// next wait or at the epoch interrupt.
fn bounded<F: Future>(
    (deadline, cancel): (Instant, CancellationToken),
    wait: F,
) -> wasmtime::Result<F::Output> {
    in_tokio(async {
        tokio::select! {
            biased;
            out = wait => Ok(out),
            () = tokio::time::sleep_until(deadline.into()) => Err(wasmtime::format_err!(TIME_UP)),
            () = cancel.cancelled() => Err(wasmtime::format_err!(TIME_UP)),
        }
    })
}

/// A stream's wait, ended by the job's time as a trap.
fn or_time_up<T>(waited: wasmtime::Result<StreamResult<T>>) -> StreamResult<T> {
    waited.map_err(StreamError::Trap)?
}

impl JobState {
    /// When waits end: the job's deadline and its cancel.
    fn ends(&self) -> (Instant, CancellationToken) {
        (self.deadline, self.cancel.clone())
    }
}

impl poll::Host for JobState {
    fn poll(&mut self, pollables: Vec<Resource<DynPollable>>) -> wasmtime::Result<Vec<u32>> {
        bounded(
            self.ends(),
            async_poll::Host::poll(&mut self.table, pollables),
        )?
    }
}

impl poll::HostPollable for JobState {
    fn ready(&mut self, pollable: Resource<DynPollable>) -> wasmtime::Result<bool> {
        // Answers at once, without waiting.
        in_tokio(async_poll::HostPollable::ready(&mut self.table, pollable))
    }

    fn block(&mut self, pollable: Resource<DynPollable>) -> wasmtime::Result<()> {
        bounded(
            self.ends(),
            async_poll::HostPollable::block(&mut self.table, pollable),
        )?
    }

    fn drop(&mut self, pollable: Resource<DynPollable>) -> wasmtime::Result<()> {
        async_poll::HostPollable::drop(&mut self.table, pollable)
    }
}

impl streams::Host for JobState {
    fn convert_stream_error(&mut self, err: StreamError) -> wasmtime::Result<streams::StreamError> {
        streams::Host::convert_stream_error(&mut self.table, err)
    }
}

impl streams::HostOutputStream for JobState {
    fn drop(&mut self, stream: Resource<DynOutputStream>) -> wasmtime::Result<()> {
        // Dropping a stream may wait for it to finish what it holds.
        bounded(
            self.ends(),
            async_streams::HostOutputStream::drop(&mut self.table, stream),
        )?
    }

    fn check_write(&mut self, stream: Resource<DynOutputStream>) -> StreamResult<u64> {
        streams::HostOutputStream::check_write(&mut self.table, stream)
    }

    fn write(&mut self, stream: Resource<DynOutputStream>, bytes: Vec<u8>) -> StreamResult<()> {
        streams::HostOutputStream::write(&mut self.table, stream, bytes)
    }

    fn blocking_write_and_flush(
        &mut self,
        stream: Resource<DynOutputStream>,
        bytes: Vec<u8>,
    ) -> StreamResult<()> {
        or_time_up(bounded(
            self.ends(),
            async_streams::HostOutputStream::blocking_write_and_flush(
                &mut self.table,
                stream,
                bytes,
            ),
        ))
    }

    fn blocking_write_zeroes_and_flush(
        &mut self,
        stream: Resource<DynOutputStream>,
        len: u64,
    ) -> StreamResult<()> {
        or_time_up(bounded(
            self.ends(),
            async_streams::HostOutputStream::blocking_write_zeroes_and_flush(
                &mut self.table,
                stream,
                len,
            ),
        ))
    }

    fn subscribe(
        &mut self,
        stream: Resource<DynOutputStream>,
    ) -> wasmtime::Result<Resource<DynPollable>> {
        streams::HostOutputStream::subscribe(&mut self.table, stream)
    }

    fn write_zeroes(&mut self, stream: Resource<DynOutputStream>, len: u64) -> StreamResult<()> {
        streams::HostOutputStream::write_zeroes(&mut self.table, stream, len)
    }

    fn flush(&mut self, stream: Resource<DynOutputStream>) -> StreamResult<()> {
        streams::HostOutputStream::flush(&mut self.table, stream)
    }

    fn blocking_flush(&mut self, stream: Resource<DynOutputStream>) -> StreamResult<()> {
        or_time_up(bounded(
            self.ends(),
            async_streams::HostOutputStream::blocking_flush(
                &mut self.table,
                Resource::new_borrow(stream.rep()),
            ),
        ))
    }

    fn splice(
        &mut self,
        dst: Resource<DynOutputStream>,
        src: Resource<DynInputStream>,
        len: u64,
    ) -> StreamResult<u64> {
        streams::HostOutputStream::splice(&mut self.table, dst, src, len)
    }

    fn blocking_splice(
        &mut self,
        dst: Resource<DynOutputStream>,
        src: Resource<DynInputStream>,
        len: u64,
    ) -> StreamResult<u64> {
        or_time_up(bounded(
            self.ends(),
            async_streams::HostOutputStream::blocking_splice(&mut self.table, dst, src, len),
        ))
    }
}

impl streams::HostInputStream for JobState {
    fn drop(&mut self, stream: Resource<DynInputStream>) -> wasmtime::Result<()> {
        bounded(
            self.ends(),
            async_streams::HostInputStream::drop(&mut self.table, stream),
        )?
    }

    fn read(&mut self, stream: Resource<DynInputStream>, len: u64) -> StreamResult<Vec<u8>> {
        streams::HostInputStream::read(&mut self.table, stream, len)
    }

    fn blocking_read(
        &mut self,
        stream: Resource<DynInputStream>,
        len: u64,
    ) -> StreamResult<Vec<u8>> {
        or_time_up(bounded(
            self.ends(),
            async_streams::HostInputStream::blocking_read(&mut self.table, stream, len),
        ))
    }

    fn skip(&mut self, stream: Resource<DynInputStream>, len: u64) -> StreamResult<u64> {
        streams::HostInputStream::skip(&mut self.table, stream, len)
    }

    fn blocking_skip(&mut self, stream: Resource<DynInputStream>, len: u64) -> StreamResult<u64> {
        or_time_up(bounded(
            self.ends(),
            async_streams::HostInputStream::blocking_skip(&mut self.table, stream, len),
        ))
    }

    fn subscribe(
        &mut self,
        stream: Resource<DynInputStream>,
    ) -> wasmtime::Result<Resource<DynPollable>> {
        streams::HostInputStream::subscribe(&mut self.table, stream)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_ready_wait_completes_and_a_pending_one_ends_at_the_cancel_or_deadline() {
        let cancelled = CancellationToken::new();
        cancelled.cancel();
        let past = Instant::now();
        let later = Instant::now() + std::time::Duration::from_secs(60);
        // Ready at once: done, whatever the time (again and again: an
        // unbiased choice among ready branches would be random).
        for _ in 0..64 {
            for ends in [(past, CancellationToken::new()), (later, cancelled.clone())] {
                assert_eq!(bounded(ends, std::future::ready(7)).unwrap(), 7);
            }
        }
        // Never ready: the cancel or the deadline ends it.
        for ends in [(later, cancelled), (past, CancellationToken::new())] {
            let e = bounded(ends, std::future::pending::<()>()).unwrap_err();
            assert!(e.to_string().contains(TIME_UP), "{e}");
        }
    }
}
