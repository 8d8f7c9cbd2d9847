//! The placement rules, one by one, without I/O.

use super::*;

const GIB: u64 = 1 << 30;

fn devices(nodes: u32, per_node: u32) -> Vec<Device> {
    uniform_cluster(nodes, per_node, 80 * GIB)
}

fn req(job: u64, gpus: u32) -> Request {
    Request {
        job,
        queue: "default".into(),
        priority: Priority::Normal,
        gpus,
        gpu_memory: 0,
        exclusive: true,
        preemptible: false,
        submitted: job,
        max_duration: None,
    }
}

fn running(job: u64, devices: &[&str]) -> Allocation {
    Allocation {
        job,
        queue: "default".into(),
        priority: Priority::Normal,
        preemptible: false,
        exclusive: true,
        devices: devices.iter().map(|d| d.to_string()).collect(),
        gpu_memory: 0,
        started: 0,
        max_duration: None,
    }
}

fn started(p: &Plan) -> Vec<u64> {
    p.start.iter().map(|(j, _)| *j).collect()
}

#[test]
fn two_fake_gpus_run_two_one_gpu_steps_and_the_third_waits_with_a_reason() {
    let s = Snapshot {
        devices: devices(1, 2),
        waiting: vec![req(1, 1), req(2, 1), req(3, 1)],
        ..Default::default()
    };
    let p = plan(&s);
    assert_eq!(started(&p), [1, 2]);
    let ids: BTreeSet<&String> = p.start.iter().flat_map(|(_, d)| d).collect();
    assert_eq!(ids.len(), 2, "distinct devices");
    assert_eq!(
        p.waiting,
        [(
            3,
            Wait::Capacity {
                needs: 1,
                most_free: 0
            }
        )]
    );
    assert_eq!(
        p.waiting[0].1.to_string(),
        "needs 1 GPU on one node, 0 free"
    );
}

#[test]
fn a_request_that_can_never_fit_is_rejected_not_queued() {
    let mut big = req(1, 9);
    let s = Snapshot {
        devices: devices(2, 8),
        waiting: vec![big.clone()],
        ..Default::default()
    };
    assert_eq!(
        plan(&s).rejected,
        [(
            1,
            Never::TooManyGpus {
                needs: 9,
                largest_node: 8
            }
        )]
    );
    big.gpus = 1;
    big.exclusive = false;
    big.gpu_memory = 200 * GIB;
    let s = Snapshot {
        waiting: vec![big],
        ..s
    };
    assert!(matches!(
        plan(&s).rejected[0].1,
        Never::TooMuchMemory { .. }
    ));
}

#[test]
fn gangs_go_on_one_node_or_not_at_all() {
    // Two nodes with two free GPUs each: a 3-GPU gang cannot start.
    let s = Snapshot {
        devices: devices(2, 4),
        running: vec![running(9, &["n0/0", "n0/1"]), running(8, &["n1/0", "n1/1"])],
        waiting: vec![req(1, 3), req(2, 2)],
        ..Default::default()
    };
    let p = plan(&s);
    assert_eq!(
        p.waiting[0],
        (
            1,
            Wait::Capacity {
                needs: 3,
                most_free: 2
            }
        )
    );
    // Job 2 would fit, but it has no declared duration: it may not delay
    // the head.
    assert_eq!(p.waiting[1], (2, Wait::Reserved { head: 1 }));
    let s = Snapshot {
        waiting: vec![req(1, 2)],
        ..s
    };
    let p = plan(&s);
    let nodes: BTreeSet<&str> = p.start[0].1.iter().map(|d| &d[..2]).collect();
    assert_eq!(nodes.len(), 1, "{p:?}");
}

#[test]
fn shared_requests_pack_by_memory_and_leave_whole_devices_free() {
    let shared = |job, mem| Request {
        exclusive: false,
        gpu_memory: mem * GIB,
        ..req(job, 1)
    };
    let s = Snapshot {
        devices: devices(1, 2),
        waiting: vec![shared(1, 20), shared(2, 20), shared(3, 30), req(4, 1)],
        ..Default::default()
    };
    let p = plan(&s);
    assert_eq!(started(&p), [1, 2, 3, 4]);
    let dev = |j: u64| p.start.iter().find(|(x, _)| *x == j).unwrap().1[0].clone();
    assert_eq!(dev(1), dev(2));
    assert_eq!(dev(2), dev(3), "packed: 70 GiB of 80 on one device");
    assert_ne!(
        dev(4),
        dev(1),
        "the exclusive job gets the untouched device"
    );
}

#[test]
fn priority_classes_order_the_queue_and_aging_lifts_the_old() {
    let mut low = req(1, 1);
    low.priority = Priority::Low;
    low.submitted = 0;
    let mut high = req(2, 1);
    high.priority = Priority::High;
    high.submitted = 1000;
    let s = Snapshot {
        now: 1000,
        devices: devices(1, 1),
        waiting: vec![low.clone(), high.clone()],
        ..Default::default()
    };
    assert_eq!(started(&plan(&s)), [2]);
    // Waited 1000 s with one class per 300 s: low is now high, and older.
    let s = Snapshot { aging: 300, ..s };
    assert_eq!(started(&plan(&s)), [1]);
    // But aging never outranks work declared critical.
    let mut critical = high.clone();
    critical.priority = Priority::Critical;
    let s = Snapshot {
        waiting: vec![low, critical],
        ..s
    };
    assert_eq!(started(&plan(&s)), [2]);
}

#[test]
fn fair_share_favours_the_queue_below_its_weight() {
    let q = |job, queue: &str| Request {
        queue: queue.into(),
        ..req(job, 1)
    };
    let mut busy = running(9, &["n0/0", "n0/1"]);
    busy.queue = "a".into();
    let s = Snapshot {
        devices: devices(1, 3),
        running: vec![busy],
        // `a` asked first, but already holds 2 GPUs.
        waiting: vec![q(1, "a"), q(2, "b")],
        ..Default::default()
    };
    assert_eq!(started(&plan(&s)), [2]);
    // With weight 10, `a` is still below its share.
    let mut s = s;
    s.quotas.insert(
        "a".into(),
        Quota {
            weight: 10.0,
            gpus: 8,
            borrow: false,
        },
    );
    assert_eq!(started(&plan(&s)), [1]);
}

#[test]
fn quotas_hold_unless_idle_quota_may_be_borrowed() {
    let q = |job, queue: &str| Request {
        queue: queue.into(),
        ..req(job, 1)
    };
    let mut s = Snapshot {
        devices: devices(1, 4),
        running: vec![{
            let mut a = running(9, &["n0/0", "n0/1"]);
            a.queue = "a".into();
            a
        }],
        waiting: vec![q(1, "a")],
        ..Default::default()
    };
    s.quotas.insert(
        "a".into(),
        Quota {
            weight: 1.0,
            gpus: 2,
            borrow: false,
        },
    );
    s.quotas.insert(
        "b".into(),
        Quota {
            weight: 1.0,
            gpus: 2,
            borrow: false,
        },
    );
    let p = plan(&s);
    assert_eq!(
        p.waiting[0].1.to_string(),
        "queue `a` over quota (2 of 2 GPUs in use)"
    );
    s.quotas.get_mut("a").unwrap().borrow = true;
    assert_eq!(started(&plan(&s)), [1], "b's quota is idle: a borrows it");
}

#[test]
fn small_jobs_backfill_only_when_they_do_not_delay_the_head() {
    let mut a = running(9, &["n0/0"]);
    a.max_duration = Some(3600);
    let mut short = req(2, 1);
    short.max_duration = Some(600);
    let mut long = req(3, 1);
    long.max_duration = Some(7200);
    let s = Snapshot {
        now: 0,
        devices: devices(1, 2),
        running: vec![a],
        waiting: vec![req(1, 2), short, long],
        ..Default::default()
    };
    let p = plan(&s);
    assert_eq!(started(&p), [2], "ends before the head's GPUs free up");
    assert!(p.waiting.contains(&(3, Wait::Reserved { head: 1 })));
}

#[test]
fn only_preemptible_lower_priority_work_is_preempted() {
    let mut victim = running(9, &["n0/0"]);
    victim.priority = Priority::Low;
    victim.preemptible = true;
    let mut keeper = running(8, &["n0/1"]);
    keeper.priority = Priority::Low;
    let mut urgent = req(1, 1);
    urgent.priority = Priority::Critical;
    let s = Snapshot {
        devices: devices(1, 2),
        running: vec![victim, keeper],
        waiting: vec![urgent],
        ..Default::default()
    };
    let p = plan(&s);
    assert_eq!(p.preempt, [9]);
    assert_eq!(p.waiting, [(1, Wait::Preempting { jobs: vec![9] })]);
    // Nothing preemptible: it waits for capacity.
    let mut s = s;
    s.running[0].preemptible = false;
    let p = plan(&s);
    assert!(p.preempt.is_empty());
    assert!(matches!(p.waiting[0].1, Wait::Capacity { .. }));
}

#[test]
fn unhealthy_and_foreign_used_gpus_are_not_offered() {
    let mut d = devices(1, 3);
    d[0].healthy = false;
    d[1].foreign_used = 10 * GIB;
    let s = Snapshot {
        devices: d,
        waiting: vec![req(1, 1), req(2, 1)],
        ..Default::default()
    };
    let p = plan(&s);
    assert_eq!(p.start, [(1, vec!["n0/2".to_owned()])]);
}
