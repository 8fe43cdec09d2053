//! berth's nftables table, rendered whole and applied in one transaction.
//!
//! Every change (a pod with hostPorts comes or goes, a Service sync, an agent
//! start) builds the *entire* desired content of table `inet <instance>` from
//! berth's state and applies it as one nft batch (the JSON `nft -j -f -` reads):
//! `add table` + `flush table` + `add chain`/`add rule` for everything. nft
//! batches are atomic, so packets see either the old or the new rule set, and
//! existing connections keep their NAT bindings (those live in conntrack, not
//! in the rules). No other table is ever named in a batch.
//!
//! The chain set is fixed, so `flush table` (which empties chains but keeps
//! them) is enough to remove stale rules:
//!
//! ```text
//! nat_prerouting  (nat, prerouting, dstnat)  -> jump services; jump hostports
//! nat_output      (nat, output, dstnat)      -> jump services; jump hostports
//! services        DNAT per Service port (ClusterIP and NodePort) to ready endpoints
//! hostports       DNAT per pod hostPort
//! nat_postrouting (nat, postrouting, srcnat) masquerade: pods leaving, 127/8 to pods, hairpin
//! filter_forward  (filter, forward, filter, policy accept) jump no_endpoints; accept bridge
//! filter_input    (filter, input, filter, policy accept)   jump no_endpoints
//! filter_output   (filter, output, filter, policy accept)  jump no_endpoints
//! no_endpoints    reject for Service ports without a ready endpoint
//! ```
//!
//! Why the `nft` binary and the `nftables` crate's JSON types rather than a
//! pure-netlink crate: every feature used here (numgen maps, fib, ct status,
//! reject) is expressible 1:1, the batch berth applies can be logged and
//! replayed by an operator with `nft -j -f`, and atomic whole-table replace is
//! a plain nft transaction. The batch is applied in-process by libnftables,
//! the library behind `nft` ([`crate::libnft`]: one context for the agent's
//! life, no process per apply), or by `nft -j -f -` where the library cannot
//! be loaded.

use std::borrow::Cow;
use std::collections::HashSet;
use std::net::Ipv4Addr;
use std::process::Stdio;

use berth_contract::Protocol;
use nftables::expr::{
    CT, Expression, Fib, FibFlag, FibResult, Map, Meta, MetaKey, NamedExpression, NgMode, Numgen,
    Payload, PayloadField, Prefix, SetItem,
};
use nftables::schema::{Chain, FlushObject, NfCmd, NfListObject, NfObject, Nftables, Rule, Table};
use nftables::stmt::{JumpTarget, Match, NAT, NATFamily, Operator, Reject, RejectType, Statement};
use nftables::types::{NfChainPolicy, NfChainType, NfFamily, NfHook, RejectCode};
use tokio::io::AsyncWriteExt;

use crate::cidr::Ipv4Net;
use crate::ipam::PodAlloc;
use crate::services::ProgrammedService;

#[derive(Debug, thiserror::Error)]
pub enum NftError {
    #[error("encode ruleset for table inet {table}")]
    Encode {
        table: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("spawn `nft -j -f -` (is the nftables package installed?)")]
    Spawn(#[source] std::io::Error),
    #[error("feed ruleset to nft")]
    Write(#[source] std::io::Error),
    #[error("wait for nft")]
    Wait(#[source] std::io::Error),
    #[error("nft rejected the ruleset for table inet {table} (exit {status}): {stderr}")]
    Rejected {
        table: String,
        status: i32,
        stderr: String,
    },
    #[error("libnftables rejected the ruleset for table inet {table}: {message}")]
    Library { table: String, message: String },
}

/// Everything the table is rendered from.
pub struct RenderInput<'a> {
    pub table: &'a str,
    pub bridge: &'a str,
    pub pod_cidr: Ipv4Net,
    pub pods: Vec<&'a PodAlloc>,
    pub services: Vec<&'a ProgrammedService>,
}

pub(crate) type S = Statement<'static>;
pub(crate) type E = Expression<'static>;

/// The complete batch for the table.
pub fn render(input: &RenderInput<'_>) -> Nftables<'static> {
    let t = input.table.to_string();
    let mut cmds: Vec<NfObject<'static>> = Vec::new();
    let table = Table {
        family: NfFamily::INet,
        name: t.clone().into(),
        handle: None,
    };
    cmds.push(NfObject::CmdObject(NfCmd::Add(NfListObject::Table(
        table.clone(),
    ))));
    cmds.push(NfObject::CmdObject(NfCmd::Flush(FlushObject::Table(table))));

    let base = |name: &str, ty, hook, prio| Chain {
        family: NfFamily::INet,
        table: t.clone().into(),
        name: name.to_string().into(),
        _type: Some(ty),
        hook: Some(hook),
        prio: Some(prio),
        policy: Some(NfChainPolicy::Accept),
        ..Chain::default()
    };
    let regular = |name: &str| Chain {
        family: NfFamily::INet,
        table: t.clone().into(),
        name: name.to_string().into(),
        ..Chain::default()
    };
    let chains = [
        base("nat_prerouting", NfChainType::NAT, NfHook::Prerouting, -100),
        base("nat_output", NfChainType::NAT, NfHook::Output, -100),
        base(
            "nat_postrouting",
            NfChainType::NAT,
            NfHook::Postrouting,
            100,
        ),
        base("filter_forward", NfChainType::Filter, NfHook::Forward, 0),
        base("filter_input", NfChainType::Filter, NfHook::Input, 0),
        base("filter_output", NfChainType::Filter, NfHook::Output, 0),
        regular("services"),
        regular("hostports"),
        regular("no_endpoints"),
    ];
    for c in chains {
        cmds.push(NfObject::CmdObject(NfCmd::Add(NfListObject::Chain(c))));
    }

    let mut rules: Vec<(&'static str, Vec<S>)> = vec![
        ("nat_prerouting", vec![jump("services")]),
        ("nat_prerouting", vec![jump("hostports")]),
        ("nat_output", vec![jump("services")]),
        ("nat_output", vec![jump("hostports")]),
        // pods talking to the world leave with the host's address
        (
            "nat_postrouting",
            vec![
                eq(payload("ip", "saddr"), prefix(input.pod_cidr)),
                ne(meta(MetaKey::Oifname), string(input.bridge)),
                masquerade(),
            ],
        ),
        // 127.0.0.1:hostPort / NodePort DNATed to a pod: the pod must answer the bridge
        (
            "nat_postrouting",
            vec![
                eq(
                    payload("ip", "saddr"),
                    prefix("127.0.0.0/8".parse().expect("valid")),
                ),
                eq(meta(MetaKey::Oifname), string(input.bridge)),
                masquerade(),
            ],
        ),
        // pod -> VIP/hostPort -> pod on the same bridge: the answer would go
        // straight back over the bridge and bypass conntrack (and a pod reaching
        // itself would see its own address as source), so such flows are
        // masqueraded. No `iifname` match: with br_netfilter the DNAT happens
        // in the bridge path, where postrouting has no input device.
        (
            "nat_postrouting",
            vec![
                eq(payload("ip", "saddr"), prefix(input.pod_cidr)),
                eq(meta(MetaKey::Oifname), string(input.bridge)),
                Statement::Match(Match {
                    left: Expression::Named(NamedExpression::CT(CT {
                        key: "status".into(),
                        family: None,
                        dir: None,
                    })),
                    right: string("dnat"),
                    op: Operator::IN,
                }),
                masquerade(),
            ],
        ),
        ("filter_forward", vec![jump("no_endpoints")]),
        (
            "filter_forward",
            vec![eq(meta(MetaKey::Iifname), string(input.bridge)), accept()],
        ),
        (
            "filter_forward",
            vec![eq(meta(MetaKey::Oifname), string(input.bridge)), accept()],
        ),
        ("filter_input", vec![jump("no_endpoints")]),
        ("filter_output", vec![jump("no_endpoints")]),
    ];
    for svc in &input.services {
        rules.extend(crate::services::rules(svc));
    }
    for pod in &input.pods {
        rules.extend(crate::ports::rules(pod));
    }
    for (chain, expr) in rules {
        cmds.push(NfObject::CmdObject(NfCmd::Add(NfListObject::Rule(Rule {
            family: NfFamily::INet,
            table: t.clone().into(),
            chain: chain.into(),
            expr: expr.into(),
            ..Rule::default()
        }))));
    }
    Nftables {
        objects: cmds.into(),
    }
}

/// Apply a batch (what `nft -j -f -` reads), keeping nft's own error message.
pub async fn apply(table: &str, batch: &Nftables<'_>) -> Result<(), NftError> {
    let json = serde_json::to_vec(batch).map_err(|source| NftError::Encode {
        table: table.to_string(),
        source,
    })?;
    run_cmd(table, &["-j", "-f", "-"], json).await
}

/// `cmd` through libnftables, or `nft <args>` with `cmd` on stdin when the
/// library is not in use.
async fn run_cmd(table: &str, args: &[&str], cmd: Vec<u8>) -> Result<(), NftError> {
    let in_process = tokio::task::spawn_blocking(move || crate::libnft::run(cmd))
        .await
        .map_err(|e| NftError::Library {
            table: table.to_string(),
            message: format!("the call did not complete: {e}"),
        })?;
    match in_process {
        Ok(Ok(())) => Ok(()),
        Ok(Err(message)) => Err(NftError::Library {
            table: table.to_string(),
            message,
        }),
        Err(cmd) => run_nft(table, args, &cmd).await,
    }
}

/// Delete table `inet <table>`; a missing table is not an error. One
/// transaction that adds the table (a no-op when it exists) and deletes it,
/// so there is no window between a check and the delete.
pub async fn delete_table(table: &str) -> Result<(), NftError> {
    let t = serde_json::json!({"family": "inet", "name": table});
    let batch = serde_json::json!({"nftables": [{"add": {"table": t}}, {"delete": {"table": t}}]});
    run_cmd(table, &["-j", "-f", "-"], batch.to_string().into_bytes()).await
}

async fn run_nft(table: &str, args: &[&str], stdin: &[u8]) -> Result<(), NftError> {
    let mut child = tokio::process::Command::new("nft")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(NftError::Spawn)?;
    let mut pipe = child.stdin.take().expect("stdin is piped");
    pipe.write_all(stdin).await.map_err(NftError::Write)?;
    drop(pipe);
    let out = child.wait_with_output().await.map_err(NftError::Wait)?;
    if out.status.success() {
        Ok(())
    } else {
        Err(NftError::Rejected {
            table: table.to_string(),
            status: out.status.code().unwrap_or(-1),
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        })
    }
}

// === expression helpers ===

pub(crate) fn string(s: impl Into<String>) -> E {
    Expression::String(Cow::Owned(s.into()))
}

pub(crate) fn ip(a: Ipv4Addr) -> E {
    string(a.to_string())
}

pub(crate) fn prefix(n: Ipv4Net) -> E {
    Expression::Named(NamedExpression::Prefix(Prefix {
        addr: Box::new(ip(n.network())),
        len: u32::from(n.prefix_len()),
    }))
}

pub(crate) fn payload(proto: &'static str, field: &'static str) -> E {
    Expression::Named(NamedExpression::Payload(Payload::PayloadField(
        PayloadField {
            protocol: proto.into(),
            field: field.into(),
        },
    )))
}

pub(crate) fn meta(key: MetaKey) -> E {
    Expression::Named(NamedExpression::Meta(Meta { key }))
}

pub(crate) fn eq(left: E, right: E) -> S {
    Statement::Match(Match {
        left,
        right,
        op: Operator::EQ,
    })
}

pub(crate) fn ne(left: E, right: E) -> S {
    Statement::Match(Match {
        left,
        right,
        op: Operator::NEQ,
    })
}

pub(crate) fn jump(target: &'static str) -> S {
    Statement::Jump(JumpTarget {
        target: target.into(),
    })
}

pub(crate) fn accept() -> S {
    Statement::Accept(None)
}

pub(crate) fn masquerade() -> S {
    Statement::Masquerade(None)
}

pub(crate) fn proto_name(p: Protocol) -> &'static str {
    match p {
        Protocol::Tcp => "tcp",
        Protocol::Udp => "udp",
    }
}

/// `<proto> dport <port>`
pub(crate) fn dport(p: Protocol, port: u16) -> S {
    eq(
        payload(proto_name(p), "dport"),
        Expression::Number(u32::from(port)),
    )
}

/// `fib daddr type local`: any address of this host, loopback included.
pub(crate) fn daddr_local() -> S {
    let mut flags = HashSet::new();
    flags.insert(FibFlag::Daddr);
    eq(
        Expression::Named(NamedExpression::Fib(Fib {
            result: FibResult::Type,
            flags,
        })),
        string("local"),
    )
}

/// `dnat ip to <addr>:<port>`
pub(crate) fn dnat(addr: Ipv4Addr, port: u16) -> S {
    Statement::DNAT(Some(NAT {
        addr: Some(ip(addr)),
        family: Some(NATFamily::IP),
        port: Some(Expression::Number(u32::from(port))),
        flags: None,
    }))
}

/// `dnat ip to numgen random mod N map { 0 : a, 1 : b, ... } : <port>`
pub(crate) fn dnat_spread(addrs: &[Ipv4Addr], port: u16) -> S {
    if addrs.len() == 1 {
        return dnat(addrs[0], port);
    }
    let items = addrs
        .iter()
        .enumerate()
        .map(|(i, a)| SetItem::Mapping(Expression::Number(i as u32), ip(*a)))
        .collect();
    let map = Map {
        key: Expression::Named(NamedExpression::Numgen(Numgen {
            mode: NgMode::Random,
            ng_mod: addrs.len() as u32,
            offset: Some(0),
        })),
        data: Expression::Named(NamedExpression::Set(items)),
    };
    Statement::DNAT(Some(NAT {
        addr: Some(Expression::Named(NamedExpression::Map(Box::new(map)))),
        family: Some(NATFamily::IP),
        port: Some(Expression::Number(u32::from(port))),
        flags: None,
    }))
}

/// A fast refusal: TCP reset or ICMP port unreachable.
pub(crate) fn reject(p: Protocol) -> S {
    Statement::Reject(Some(match p {
        Protocol::Tcp => Reject::new(Some(RejectType::TCPReset), None),
        Protocol::Udp => Reject::new(Some(RejectType::ICMP), Some(RejectCode::PortUnreach)),
    }))
}

#[cfg(test)]
#[path = "nft_tests.rs"]
mod tests;
