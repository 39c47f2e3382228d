//! The transport's metrics: connections that became sessions, connections turned away before,
//! `accept()` failures, PROXY headers and certificate reloads.

use prometheus::{IntCounterVec, IntGauge, IntGaugeVec, Registry};

use crate::metric;
use crate::transport::labels::{AcceptError, ProxyResult, Rejection, ReloadResult, TransportName};

/// The transport's metrics. Cloning is cheap.
#[derive(Clone, Debug)]
pub(crate) struct TransportMetrics {
    /// Connections admitted as sessions, by transport.
    sessions_accepted: IntCounterVec,
    /// Sessions admitted and not yet closed, by transport.
    sessions_active: IntGaugeVec,
    /// Connections turned away, by reason.
    connections_rejected: IntCounterVec,
    /// accept() failures, by kind.
    accept_errors: IntCounterVec,
    /// PROXY protocol headers, by result.
    proxy_headers: IntCounterVec,
    /// Certificate reloads, by result.
    tls_reloads: IntCounterVec,
}

impl TransportMetrics {
    /// Registers the group in `registry`, every label value at zero.
    pub(crate) fn register(registry: &Registry) -> Result<TransportMetrics, prometheus::Error> {
        Ok(TransportMetrics {
            sessions_accepted: metric::counter_vec(
                registry,
                "gameserver_sessions_accepted_total",
                "Connections admitted as sessions, by transport (tcp, websocket).",
                "transport",
                TransportName::ALL.map(TransportName::as_str),
            )?,
            sessions_active: metric::gauge_vec(
                registry,
                "gameserver_transport_sessions_active",
                "Sessions admitted and not yet closed, by transport (they add up to \
                 gameserver_sessions_active).",
                "transport",
                TransportName::ALL.map(TransportName::as_str),
            )?,
            connections_rejected: metric::counter_vec(
                registry,
                "gameserver_connections_rejected_total",
                "Connections turned away with Bye{server_full} before becoming sessions, by reason.",
                "reason",
                Rejection::ALL.map(Rejection::as_str),
            )?,
            accept_errors: metric::counter_vec(
                registry,
                "gameserver_accept_errors_total",
                "accept() failures, by kind (emfile, enfile, enobufs, enomem, other).",
                "kind",
                AcceptError::ALL.map(AcceptError::as_str),
            )?,
            proxy_headers: metric::counter_vec(
                registry,
                "gameserver_proxy_headers_total",
                "PROXY protocol headers on the game port, by result: ok, missing (a trusted \
                 balancer's connection without one), invalid, untrusted (one from an address not \
                 in net.proxy_protocol.trusted).",
                "result",
                ProxyResult::ALL.map(ProxyResult::as_str),
            )?,
            tls_reloads: metric::counter_vec(
                registry,
                "gameserver_tls_reloads_total",
                "TLS certificate reloads on SIGHUP, by result: ok, error (the old pair is kept).",
                "result",
                ReloadResult::ALL.map(ReloadResult::as_str),
            )?,
        })
    }

    /// A connection became a session over `transport`.
    pub(crate) fn session_accepted(&self, transport: TransportName) {
        self.sessions_accepted
            .with_label_values(&[transport.as_str()])
            .inc();
    }

    /// The gauge of sessions open over `transport`.
    pub(crate) fn active(&self, transport: TransportName) -> IntGauge {
        self.sessions_active
            .with_label_values(&[transport.as_str()])
    }

    /// A connection was turned away before it became a session.
    pub(crate) fn rejected(&self, rejection: Rejection) {
        self.connections_rejected
            .with_label_values(&[rejection.as_str()])
            .inc();
    }

    /// `accept()` failed for a reason that is not one connection's.
    pub(crate) fn accept_error(&self, kind: AcceptError) {
        self.accept_errors.with_label_values(&[kind.as_str()]).inc();
    }

    /// What came of a PROXY header.
    pub(crate) fn proxy_header(&self, result: ProxyResult) {
        self.proxy_headers
            .with_label_values(&[result.as_str()])
            .inc();
    }

    /// What came of a certificate reload.
    #[cfg_attr(not(feature = "app"), allow(dead_code))]
    pub(crate) fn tls_reload(&self, result: ReloadResult) {
        self.tls_reloads.with_label_values(&[result.as_str()]).inc();
    }
}
