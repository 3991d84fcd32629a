//! The repository layer on both backends: every test runs on PostgreSQL and on SQLite.

use e2e::env;
use nova_core::ids::{InstanceUuid, NodeUuid};
use nova_core::model::{
    Address, Fault, NetworkRequest, NodeInventory, NodeType, PowerState, Resources, TaskState,
    VmState,
};
use nova_core::rpc::{ComputeCommand, TaskKind};
use nova_db::actions::Requester;
use nova_db::instances::{self, Expect, NewInstance, SetStates, TransitionError, TransitionRule};
use nova_db::tasks::{self, TaskState as RowState};
use nova_db::DatabaseSettings;
use nova_db::{flavors, nodes, Db};

macro_rules! on_both_backends {
    ($name:ident) => {
        mod $name {
            #[tokio::test]
            async fn postgresql() -> anyhow::Result<()> {
                let url = e2e::env::fresh_pg_database().await?;
                super::$name(super::connect(&url).await?).await
            }

            #[tokio::test]
            async fn sqlite() -> anyhow::Result<()> {
                let (_dir, url) = e2e::env::fresh_sqlite_database()?;
                super::$name(super::connect(&url).await?).await
            }
        }
    };
}

async fn connect(url: &str) -> anyhow::Result<Db> {
    Ok(Db::connect(&DatabaseSettings {
        url: url.into(),
        max_connections: 4,
    })
    .await?)
}

fn who() -> Requester<'static> {
    Requester {
        request_id: "req-test",
        project_id: "p1",
        user_id: "u1",
    }
}

async fn new_instance(
    db: &Db,
    name: &str,
) -> anyhow::Result<(InstanceUuid, nova_core::ids::TaskId)> {
    let flavor = flavors::get(db, "1")
        .await?
        .ok_or_else(|| anyhow::anyhow!("m1.tiny missing"))?;
    let new = NewInstance {
        name: name.into(),
        project_id: "p1".into(),
        user_id: "u1".into(),
        node_type: NodeType::Vm,
        flavor,
        image_ref: "img".into(),
        metadata: [("k".to_owned(), "v".to_owned())].into(),
        user_data: None,
        availability_zone: None,
        description: None,
        key_name: None,
        key_data: None,
        tags: Vec::new(),
        hostname: None,
        networks: NetworkRequest::Auto,
        scheduler_hints: Default::default(),
        access_ip_v4: None,
        access_ip_v6: None,
        config_drive: false,
        trusted_image_certificates: None,
        auto_disk_config: false,
    };
    let created = instances::create_with_build_tasks(db, &[new], "req-test", None, |_| {
        Ok::<(), nova_db::DbError>(())
    })
    .await?;
    let instances::Created::Servers(created) = created else {
        anyhow::bail!("a replay without a key");
    };
    let (i, t) = created
        .into_iter()
        .next()
        .ok_or_else(|| anyhow::anyhow!("nothing created"))?;
    Ok((i.uuid, t))
}

fn inventory(vcpus: i64, memory_mb: i64) -> NodeInventory {
    NodeInventory {
        uuid: NodeUuid::new_v4(),
        name: "node-a".into(),
        node_type: NodeType::Vm,
        hypervisor_type: "fake".into(),
        hypervisor_version: 0,
        total: Resources {
            vcpus,
            memory_mb,
            disk_gb: 100,
        },
        cpu_allocation_ratio: 1.0,
        ram_allocation_ratio: 1.0,
        disk_allocation_ratio: 1.0,
    }
}

on_both_backends!(an_instance_is_written_with_its_task_and_action);
async fn an_instance_is_written_with_its_task_and_action(db: Db) -> anyhow::Result<()> {
    let (uuid, task) = new_instance(&db, "one").await?;
    let i = instances::get(&db, uuid)
        .await?
        .ok_or_else(|| anyhow::anyhow!("not found"))?;
    assert_eq!(
        (i.vm_state, i.task_state),
        (VmState::Building, Some(TaskState::Scheduling))
    );
    assert_eq!(i.metadata.get("k").map(String::as_str), Some("v"));
    assert_eq!(i.flavor.name, "m1.tiny");
    let t = tasks::get(&db, task)
        .await?
        .ok_or_else(|| anyhow::anyhow!("no task"))?;
    assert_eq!(
        (t.kind, t.state, t.instance),
        (TaskKind::Build, RowState::Pending, uuid)
    );
    let recorded = nova_db::actions::list(&db, uuid).await?;
    assert_eq!(recorded.len(), 1);
    assert_eq!(recorded[0].action, "create");
    assert_eq!(instances::list(&db, Some("p1"), 10).await?.len(), 1);
    assert!(instances::list(&db, Some("p2"), 10).await?.is_empty());
    Ok(())
}

on_both_backends!(a_claim_with_a_stale_generation_changes_nothing);
async fn a_claim_with_a_stale_generation_changes_nothing(db: Db) -> anyhow::Result<()> {
    let inv = inventory(4, 2048);
    nodes::register(&db, "h1", "nova-compute", std::slice::from_ref(&inv)).await?;
    let node = nodes::node(&db, inv.uuid)
        .await?
        .ok_or_else(|| anyhow::anyhow!("no node"))?;
    let (a, _) = new_instance(&db, "a").await?;
    let (b, _) = new_instance(&db, "b").await?;
    let need = Resources {
        vcpus: 1,
        memory_mb: 512,
        disk_gb: 1,
    };

    let mut tx = db.begin().await?;
    assert!(nodes::claim(&mut tx, inv.uuid, node.generation, a, need).await?);
    tx.commit().await?;
    // The same generation again: somebody else claimed in between, so this one loses.
    let mut tx = db.begin().await?;
    assert!(!nodes::claim(&mut tx, inv.uuid, node.generation, b, need).await?);
    tx.commit().await?;
    assert_eq!(nodes::allocation(&db, b).await?, None);

    let node = nodes::node(&db, inv.uuid)
        .await?
        .ok_or_else(|| anyhow::anyhow!("no node"))?;
    assert_eq!(node.used, need);
    // With the fresh generation it goes through.
    let mut tx = db.begin().await?;
    assert!(nodes::claim(&mut tx, inv.uuid, node.generation, b, need).await?);
    tx.commit().await?;
    assert_eq!(nodes::allocation_count(&db).await?, 2);
    Ok(())
}

on_both_backends!(a_claim_beyond_capacity_fails_and_release_is_idempotent);
async fn a_claim_beyond_capacity_fails_and_release_is_idempotent(db: Db) -> anyhow::Result<()> {
    let inv = inventory(2, 1024);
    nodes::register(&db, "h1", "nova-compute", std::slice::from_ref(&inv)).await?;
    let (a, _) = new_instance(&db, "a").await?;
    let (b, _) = new_instance(&db, "b").await?;
    let need = Resources {
        vcpus: 1,
        memory_mb: 768,
        disk_gb: 1,
    };
    let g = |db: Db| async move {
        anyhow::Ok(
            nodes::node(&db, inv.uuid)
                .await?
                .map(|n| n.generation)
                .unwrap_or(-1),
        )
    };

    // (The generation is read before the transaction: SQLite has a single connection.)
    let generation = g(db.clone()).await?;
    let mut tx = db.begin().await?;
    assert!(nodes::claim(&mut tx, inv.uuid, generation, a, need).await?);
    tx.commit().await?;
    let generation = g(db.clone()).await?;
    let mut tx = db.begin().await?;
    assert!(
        !nodes::claim(&mut tx, inv.uuid, generation, b, need).await?,
        "1536 MB > 1024 MB"
    );
    tx.commit().await?;
    // The scheduler's filter agrees.
    let alive_since = nova_core::time::now_ms() - 60_000;
    assert!(nodes::candidates(&db, NodeType::Vm, need, alive_since)
        .await?
        .is_empty());
    assert!(
        nodes::candidates(&db, NodeType::Container, Resources::default(), alive_since)
            .await?
            .is_empty()
    );

    let mut tx = db.begin().await?;
    assert!(nodes::release(&mut tx, a).await?);
    assert!(
        !nodes::release(&mut tx, a).await?,
        "a second release gives nothing back"
    );
    tx.commit().await?;
    let node = nodes::node(&db, inv.uuid)
        .await?
        .ok_or_else(|| anyhow::anyhow!("no node"))?;
    assert_eq!(node.used, Resources::default());
    assert_eq!(
        nodes::candidates(&db, NodeType::Vm, need, alive_since)
            .await?
            .len(),
        1
    );
    Ok(())
}

on_both_backends!(transitions_compare_and_set);
async fn transitions_compare_and_set(db: Db) -> anyhow::Result<()> {
    let (uuid, _) = new_instance(&db, "cas").await?;
    let stop = TransitionRule {
        from_vm_states: &[VmState::Active],
        task_state: TaskState::PoweringOff,
    };
    // A server not yet placed: a stop is not ready (Nova's host check comes before the
    // state's), and an action without that check meets the state's conflict.
    let r =
        instances::begin_action(&db, uuid, Some("p1"), false, stop, TaskKind::Stop, &who()).await;
    assert!(matches!(r, Err(TransitionError::NotReady)), "{r:?}");
    let pause = TransitionRule {
        from_vm_states: &[VmState::Active],
        task_state: TaskState::Pausing,
    };
    let r =
        instances::begin_action(&db, uuid, Some("p1"), false, pause, TaskKind::Pause, &who()).await;
    assert!(matches!(
        r,
        Err(TransitionError::Conflict {
            vm_state: VmState::Building,
            ..
        })
    ));
    let r = instances::begin_action(
        &db,
        uuid,
        Some("other"),
        false,
        stop,
        TaskKind::Stop,
        &who(),
    )
    .await;
    assert!(
        matches!(r, Err(TransitionError::NotFound)),
        "another project's instance is not found"
    );

    let mut tx = db.begin().await?;
    let active = SetStates {
        vm_state: VmState::Active,
        task_state: None,
        power_state: Some(PowerState::Running),
        launched: true,
        addresses: Some(vec![Address {
            network: "net".into(),
            addr: "10.0.0.5".into(),
            version: 4,
            mac: Some("fa:16:3e:00:00:01".into()),
        }]),
    };
    let wrong = Expect {
        vm_state: Some(VmState::Building),
        task_state: Some(TaskState::Spawning),
    };
    assert!(
        !instances::transition(&mut tx, uuid, wrong, active.clone()).await?,
        "task state is scheduling, not spawning"
    );
    assert!(instances::assign_host(&mut tx, uuid, "h1", "node-a").await?);
    assert!(instances::transition(&mut tx, uuid, wrong, active.clone()).await?);
    assert!(
        !instances::transition(&mut tx, uuid, wrong, active.clone()).await?,
        "a duplicate is a no-op"
    );
    tx.commit().await?;

    let i = instances::get(&db, uuid)
        .await?
        .ok_or_else(|| anyhow::anyhow!("gone"))?;
    assert_eq!(
        (i.vm_state, i.power_state, i.host.as_deref()),
        (VmState::Active, PowerState::Running, Some("h1"))
    );
    assert!(i.launched_at.is_some());
    assert_eq!(Some(i.addresses), active.addresses);
    assert_eq!(i.networks, NetworkRequest::Auto);

    // A stop goes to the server's host straight from the API: its task is written dispatched
    // and its command named with the host.
    let begun =
        instances::begin_action(&db, uuid, Some("p1"), false, stop, TaskKind::Stop, &who()).await?;
    match &begun.to_host {
        Some((host, ComputeCommand::PowerOff { task_id, instance })) => {
            assert_eq!(
                (host.as_str(), *task_id, *instance),
                ("h1", begun.task, uuid)
            );
        }
        other => anyhow::bail!("a stop not sent to its host: {other:?}"),
    }
    let task = tasks::get(&db, begun.task)
        .await?
        .ok_or_else(|| anyhow::anyhow!("no task"))?;
    assert_eq!(task.state, RowState::Dispatched);
    let again =
        instances::begin_action(&db, uuid, Some("p1"), false, stop, TaskKind::Stop, &who()).await;
    assert!(matches!(
        again,
        Err(TransitionError::Conflict {
            task_state: Some(TaskState::PoweringOff),
            ..
        })
    ));

    let fault = Fault {
        code: 500,
        message: "boom".into(),
        details: None,
        created_at: 1,
    };
    let mut tx = db.begin().await?;
    let expect = Expect {
        vm_state: Some(VmState::Active),
        task_state: None,
    };
    assert!(instances::set_error(&mut tx, uuid, expect, &fault, Some("h1")).await?);
    assert!(!instances::set_error(&mut tx, uuid, expect, &fault, Some("h1")).await?);
    tx.commit().await?;
    let i = instances::get(&db, uuid)
        .await?
        .ok_or_else(|| anyhow::anyhow!("gone"))?;
    assert_eq!(i.vm_state, VmState::Error);
    assert_eq!(i.fault.map(|f| f.message), Some("boom".into()));

    let mut tx = db.begin().await?;
    assert!(instances::mark_deleted(&mut tx, uuid).await?);
    assert!(!instances::mark_deleted(&mut tx, uuid).await?);
    tx.commit().await?;
    assert!(instances::get(&db, uuid).await?.is_none());
    assert!(instances::get_any(&db, uuid)
        .await?
        .is_some_and(|i| i.deleted));
    Ok(())
}

on_both_backends!(services_heartbeat_and_go_down_when_silent);
async fn services_heartbeat_and_go_down_when_silent(db: Db) -> anyhow::Result<()> {
    assert!(
        !nodes::heartbeat(&db, "h1", "nova-compute").await?,
        "unregistered"
    );
    nodes::register(&db, "h1", "nova-compute", &[inventory(1, 1)]).await?;
    assert!(nodes::heartbeat(&db, "h1", "nova-compute").await?);
    let s = nodes::service(&db, "h1", "nova-compute")
        .await?
        .ok_or_else(|| anyhow::anyhow!("none"))?;
    let now = nova_core::time::now_ms();
    assert!(s.is_up(now, 1000));
    assert!(!s.is_up(now + 5000, 1000));
    // Registering again updates, it does not duplicate.
    nodes::register(&db, "h1", "nova-compute", &[]).await?;
    assert_eq!(nodes::services(&db).await?.len(), 1);
    Ok(())
}

on_both_backends!(a_lease_has_one_holder_until_it_expires_or_is_released);
async fn a_lease_has_one_holder_until_it_expires_or_is_released(db: Db) -> anyhow::Result<()> {
    use nova_db::leases;
    // Asked for at once by many: exactly one gets it.
    let asks = (0..8).map(|i| {
        let db = db.clone();
        async move { leases::acquire(&db, "reconciler", &format!("c{i}"), 60_000).await }
    });
    let got = futures::future::try_join_all(asks).await?;
    assert_eq!(got.iter().filter(|g| **g).count(), 1, "{got:?}");
    let holder = format!("c{}", got.iter().position(|g| *g).unwrap_or(0));
    let other = if holder == "c0" { "c1" } else { "c0" };
    assert!(
        leases::acquire(&db, "reconciler", &holder, 60_000).await?,
        "renewed"
    );
    assert!(!leases::acquire(&db, "reconciler", other, 60_000).await?);
    // Another lease is another name.
    assert!(leases::acquire(&db, "other", other, 60_000).await?);
    // Released: the next one takes it.
    leases::release(&db, "reconciler", &holder).await?;
    assert!(leases::acquire(&db, "reconciler", other, 1).await?);
    // Expired: taken over, and the old holder has lost it.
    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    assert!(leases::acquire(&db, "reconciler", &holder, 60_000).await?);
    assert!(!leases::acquire(&db, "reconciler", other, 60_000).await?);
    Ok(())
}

#[test]
fn test_env_defaults_point_at_loopback() {
    assert!(env::pg_admin_url().contains("127.0.0.1") || std::env::var("NOVA_TEST_PG_URL").is_ok());
    assert!(env::amqp_url().contains("127.0.0.1") || std::env::var("NOVA_TEST_AMQP_URL").is_ok());
}

/// Servers from before hostnames were kept (their column NULL) get, at start-up, the hostname
/// they have been shown with (made from the name), so that sorting by hostname sees it.
async fn old_servers_get_their_hostname_at_start(url: &str) -> anyhow::Result<()> {
    let db = connect(url).await?;
    new_instance(&db, "Old Server").await?;
    sqlx::any::install_default_drivers();
    let raw = sqlx::AnyPool::connect(url).await?;
    // As a row written before migration 0010.
    sqlx::query("UPDATE instances SET hostname = NULL")
        .execute(&raw)
        .await?;
    let count = "SELECT COUNT(*) FROM instances WHERE hostname = 'old-server'";
    let (n,): (i64,) = sqlx::query_as(count).fetch_one(&raw).await?;
    assert_eq!(n, 0);
    drop(db);
    let _db = connect(url).await?;
    let (n,): (i64,) = sqlx::query_as(count).fetch_one(&raw).await?;
    assert_eq!(n, 1);
    Ok(())
}

#[tokio::test]
async fn old_servers_get_their_hostname_at_start_postgresql() -> anyhow::Result<()> {
    old_servers_get_their_hostname_at_start(&e2e::env::fresh_pg_database().await?).await
}

#[tokio::test]
async fn old_servers_get_their_hostname_at_start_sqlite() -> anyhow::Result<()> {
    let (_dir, url) = e2e::env::fresh_sqlite_database()?;
    old_servers_get_their_hostname_at_start(&url).await
}

/// Identity's effective roles (own, the groups', the system's), tags and a domain's cascade
/// delete, in the SQL both backends run.
async fn identity_roles_groups_tags_and_domain_delete(db: Db) -> anyhow::Result<()> {
    use nova_db::identity::{self as id, Domain, Group, GroupAssignment, Project, User};
    id::create_domain(
        &db,
        &Domain {
            id: "d1".into(),
            name: "d1".into(),
            description: String::new(),
            enabled: true,
        },
    )
    .await?;
    id::create_project(
        &db,
        &Project {
            id: "p1".into(),
            name: "p1".into(),
            domain_id: "d1".into(),
            description: String::new(),
            enabled: true,
            parent_id: None,
        },
    )
    .await?;
    id::create_user(
        &db,
        &User {
            id: "u1".into(),
            name: "u1".into(),
            domain_id: "d1".into(),
            enabled: true,
            email: None,
            default_project_id: None,
            password_hash: None,
            extra: r#"{"description":"x"}"#.into(),
        },
    )
    .await?;
    let member = id::create_role(&db, "r-member", "member", None).await?;
    let reader = id::create_role(&db, "r-reader", "reader", None).await?;
    id::grant(&db, "u1", &reader.id, "p1", "").await?;
    id::create_group(
        &db,
        &Group {
            id: "g1".into(),
            name: "g1".into(),
            domain_id: "d1".into(),
            description: String::new(),
        },
    )
    .await?;
    let via_group = GroupAssignment {
        group_id: "g1".into(),
        role_id: member.id.clone(),
        project_id: "p1".into(),
        domain_id: String::new(),
        system: String::new(),
    };
    id::grant_group(&db, &via_group).await?;
    let names = |roles: Vec<id::Role>| roles.into_iter().map(|r| r.name).collect::<Vec<_>>();
    assert_eq!(
        names(id::effective_roles_of(&db, "u1", "p1", "", "").await?),
        ["reader"]
    );
    id::add_member(&db, "g1", "u1").await?;
    assert_eq!(
        names(id::effective_roles_of(&db, "u1", "p1", "", "").await?),
        ["member", "reader"]
    );
    assert_eq!(
        names(id::roles_of(&db, "u1", "p1", "").await?),
        ["reader"],
        "direct grants only"
    );
    assert!(id::effective_roles_of(&db, "u1", "", "", "all")
        .await?
        .is_empty());
    id::grant_system(&db, "u1", &reader.id).await?;
    assert_eq!(
        names(id::effective_roles_of(&db, "u1", "", "", "all").await?),
        ["reader"]
    );
    assert_eq!(id::projects_of_user(&db, "u1").await?.len(), 1);

    id::set_project_tags(&db, "p1", &["a".into(), "b".into()]).await?;
    let tags = id::project_tags(&db, &["p1".into(), "nope".into()]).await?;
    assert_eq!(tags.get("p1").cloned().unwrap_or_default(), ["a", "b"]);
    assert!(!tags.contains_key("nope"));

    assert!(id::delete_domain(&db, "d1").await?);
    assert!(id::user(&db, "u1").await?.is_none());
    assert!(id::project(&db, "p1").await?.is_none());
    assert!(id::group(&db, "g1").await?.is_none());
    assert!(id::system_assignments(&db, Some("u1")).await?.is_empty());
    assert!(id::group_assignments(&db, None, None, None, None, None)
        .await?
        .is_empty());
    Ok(())
}
on_both_backends!(identity_roles_groups_tags_and_domain_delete);

/// A network of project p1 with a /28 (addresses .2 to .14) and the ports' request for it.
async fn network_with_subnet(db: &Db) -> anyhow::Result<nova_db::ports::NicRequest> {
    let now = nova_core::time::now_ms();
    let network = nova_db::networks::Network {
        id: uuid::Uuid::new_v4().to_string(),
        name: "net".into(),
        description: String::new(),
        project_id: "p1".into(),
        shared: false,
        admin_state_up: true,
        backend: "net".into(),
        tags: "[]".into(),
        created_at: now,
        updated_at: now,
        port_security_enabled: true,
        router_external: false,
    };
    assert!(nova_db::networks::create_within_quota(db, &network, -1).await?);
    let subnet = nova_db::subnets::Subnet {
        id: uuid::Uuid::new_v4().to_string(),
        network_id: network.id.clone(),
        project_id: "p1".into(),
        name: String::new(),
        description: String::new(),
        ip_version: 4,
        cidr: "10.9.0.0/28".into(),
        gateway_ip: Some("10.9.0.1".into()),
        allocation_pools: r#"[{"start":"10.9.0.2","end":"10.9.0.14"}]"#.into(),
        dns_nameservers: "[]".into(),
        host_routes: "[]".into(),
        enable_dhcp: true,
        ipv6_ra_mode: None,
        ipv6_address_mode: None,
        tags: "[]".into(),
        revision_number: 0,
        created_at: now,
        updated_at: now,
    };
    assert!(matches!(
        nova_db::subnets::create(db, &subnet, -1).await?,
        nova_db::subnets::Created::Yes
    ));
    Ok(nova_db::ports::NicRequest {
        network_id: network.id,
        port_id: None,
        fixed_ip: None,
        security_groups: Vec::new(),
        for_build: true,
    })
}

// A server's ports are made beside its scheduling (no host yet) and again by a build handed
// out twice: however the calls meet, the server has one port on the network, bound to the
// host its build went to last.
on_both_backends!(a_servers_ports_are_made_once_however_often_asked);
async fn a_servers_ports_are_made_once_however_often_asked(db: Db) -> anyhow::Result<()> {
    use nova_db::ports;
    let request = network_with_subnet(&db).await?;
    let (uuid, _) = new_instance(&db, "a").await?;
    let instance = instances::get_any(&db, uuid)
        .await?
        .ok_or_else(|| anyhow::anyhow!("instance gone"))?;
    let requests = std::slice::from_ref(&request);
    let (early, placed) = tokio::join!(
        ports::allocate_for_instance(&db, &instance, None, requests),
        ports::allocate_for_instance(&db, &instance, Some("h1"), requests)
    );
    let (early, placed) = (
        early?.map_err(|(_, r)| anyhow::anyhow!("{r:?}"))?,
        placed?.map_err(|(_, r)| anyhow::anyhow!("{r:?}"))?,
    );
    assert_eq!(early.len(), 1);
    assert_eq!(
        early[0].port.id, placed[0].port.id,
        "one port for both calls"
    );
    ports::bind_to_host(&db, &uuid.0.to_string(), "h1").await?;
    let made = ports::of_device(&db, &uuid.0.to_string()).await?;
    assert_eq!(made.len(), 1, "{made:?}");
    assert_eq!(made[0].host_id, "h1");
    let ips = ports::fixed_ips(&db, &[&made[0].id]).await?;
    assert_eq!(ips.get(&made[0].id).map(Vec::len), Some(1), "{ips:?}");
    // And no other port on the network (an unbound one included).
    assert_eq!(
        nova_db::ports::ids_on_network(&db, &request.network_id).await?,
        [made[0].id.clone()]
    );
    // Handed out again, to another host: the same port, bound there.
    let again = ports::allocate_for_instance(&db, &instance, Some("h2"), requests)
        .await?
        .map_err(|(_, r)| anyhow::anyhow!("{r:?}"))?;
    assert_eq!(again[0].port.id, made[0].id);
    assert_eq!(
        ports::of_device(&db, &uuid.0.to_string()).await?[0].host_id,
        "h2"
    );

    // Two NICs on the one network: two ports, however the calls meet, each NIC its own and
    // the same two every time.
    let (uuid, _) = new_instance(&db, "b").await?;
    let instance = instances::get_any(&db, uuid)
        .await?
        .ok_or_else(|| anyhow::anyhow!("instance gone"))?;
    let twice = [request.clone(), request.clone()];
    let (early, placed) = tokio::join!(
        ports::allocate_for_instance(&db, &instance, None, &twice),
        ports::allocate_for_instance(&db, &instance, Some("h1"), &twice)
    );
    let ids = |r: Result<Vec<ports::Allocated>, (usize, nova_core::ipam::Refusal)>| -> anyhow::Result<Vec<String>> {
        Ok(r.map_err(|(_, r)| anyhow::anyhow!("{r:?}"))?
            .into_iter()
            .map(|a| a.port.id)
            .collect())
    };
    let (mut early, mut placed) = (ids(early?)?, ids(placed?)?);
    assert_eq!(early.len(), 2);
    assert_ne!(early[0], early[1], "a port for each NIC");
    let made: std::collections::BTreeSet<String> = ports::of_device(&db, &uuid.0.to_string())
        .await?
        .into_iter()
        .map(|p| p.id)
        .collect();
    assert_eq!(made.len(), 2, "{made:?}");
    let again = ids(ports::allocate_for_instance(&db, &instance, Some("h2"), &twice).await?)?;
    for list in [&mut early, &mut placed] {
        list.sort();
    }
    let mut sorted = again.clone();
    sorted.sort();
    assert_eq!(early, placed);
    assert_eq!(sorted, early, "the same two again");
    assert_eq!(made.into_iter().collect::<Vec<_>>(), early, "no third port");
    Ok(())
}

// The NIC a server's port carries from its own transaction (on PostgreSQL the port's write
// reads its groups' rules and the remote groups' members, so that a build reads nothing more)
// is the NIC, with its filter, that the ports' rows give when read again: what the host's
// later syncs push. In the project's default group (ingress from its own members), with
// another member there before it, and on its own.
on_both_backends!(a_servers_nic_from_its_ports_write_is_the_one_read_again);
async fn a_servers_nic_from_its_ports_write_is_the_one_read_again(db: Db) -> anyhow::Result<()> {
    use nova_db::ports;
    let request = network_with_subnet(&db).await?;
    let mut nics = Vec::new();
    for name in ["first", "second"] {
        let (uuid, _) = new_instance(&db, name).await?;
        let instance = instances::get_any(&db, uuid)
            .await?
            .ok_or_else(|| anyhow::anyhow!("instance gone"))?;
        let made =
            ports::allocate_for_instance(&db, &instance, None, std::slice::from_ref(&request))
                .await?
                .map_err(|(_, r)| anyhow::anyhow!("{r:?}"))?;
        let built = nova_db::firewall::nics_of(&db, &made).await?;
        let ports: Vec<ports::Port> = made.iter().map(|a| a.port.clone()).collect();
        let read = nova_db::firewall::nics(&db, &ports).await?;
        assert_eq!(built, read, "{name}");
        if matches!(db, Db::Pg(_)) {
            assert!(made.iter().all(|a| a.nic.is_some()), "built with the write");
        }
        nics.push(
            read.into_iter()
                .next()
                .ok_or_else(|| anyhow::anyhow!("no NIC"))?,
        );
    }
    // A server of two NICs in the group: each NIC's filter lets in the other's address.
    let (uuid, _) = new_instance(&db, "two").await?;
    let instance = instances::get_any(&db, uuid)
        .await?
        .ok_or_else(|| anyhow::anyhow!("instance gone"))?;
    let made =
        ports::allocate_for_instance(&db, &instance, None, &[request.clone(), request.clone()])
            .await?
            .map_err(|(_, r)| anyhow::anyhow!("{r:?}"))?;
    let two = nova_db::firewall::nics_of(&db, &made).await?;
    let ports: Vec<ports::Port> = made.iter().map(|a| a.port.clone()).collect();
    assert_eq!(two, nova_db::firewall::nics(&db, &ports).await?);
    let remotes: Vec<_> = two[0]
        .firewall
        .iter()
        .flat_map(|f| f.rules.iter().map(|r| r.remote.clone()))
        .collect();
    assert!(
        remotes.contains(&Some(format!("{}/32", two[1].ips[0].address))),
        "{remotes:?}"
    );

    // The second's filter lets in the first, the group's other member (its own address is
    // no rule of its own).
    let (first, second) = (&nics[0], &nics[1]);
    let filter = second
        .firewall
        .as_ref()
        .ok_or_else(|| anyhow::anyhow!("no filter"))?;
    assert!(filter.enabled);
    let from = |ip: &str| Some(format!("{ip}/32"));
    let remotes: Vec<_> = filter.rules.iter().map(|r| r.remote.clone()).collect();
    assert!(
        remotes.contains(&from(&first.ips[0].address)),
        "{remotes:?}"
    );
    assert!(
        !remotes.contains(&from(&second.ips[0].address)),
        "{remotes:?}"
    );
    Ok(())
}

/// A server's delete in flight (its row locked for update by the release of its ports) makes
/// a port create for it wait, and then refuse: no port outlives its server. (PostgreSQL:
/// SQLite has one writer, and the create simply runs after the delete.)
#[tokio::test]
async fn a_port_made_while_its_server_is_deleted_does_not_outlive_it() -> anyhow::Result<()> {
    use nova_db::ports;
    let db = connect(&env::fresh_pg_database().await?).await?;
    let request = network_with_subnet(&db).await?;
    let (uuid, _) = new_instance(&db, "a").await?;
    let instance = instances::get_any(&db, uuid)
        .await?
        .ok_or_else(|| anyhow::anyhow!("instance gone"))?;
    let device = uuid.0.to_string();
    let mut tx = db.begin().await?;
    assert!(instances::mark_deleted(&mut tx, uuid).await?);
    ports::release_for_instance(&mut tx, &device).await?;
    let allocating = {
        let (db, instance, request) = (db.clone(), instance.clone(), request.clone());
        tokio::spawn(
            async move { ports::allocate_for_instance(&db, &instance, None, &[request]).await },
        )
    };
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert!(!allocating.is_finished(), "the create waits for the delete");
    tx.commit().await?;
    match allocating.await?? {
        Err((_, refusal)) => assert_eq!(refusal.kind, "InstanceNotFound"),
        Ok(made) => anyhow::bail!("ports made for a deleted server: {made:?}"),
    }
    // No port on the network, bound or not.
    assert!(ports::ids_on_network(&db, &request.network_id)
        .await?
        .is_empty());
    Ok(())
}

/// The server groups' check at claim (`server_groups::lock_and_place`): a placement that waits
/// for the group's lock sees the member placed meanwhile, not the rows as they were before its
/// wait (PostgreSQL answers a statement that waited for a lock with its snapshot from before,
/// hence the lock and the read are two statements). Without it, two anti-affinity members
/// placed at once could share a host.
#[tokio::test]
async fn a_group_member_placed_while_another_waits_for_the_group_is_seen() -> anyhow::Result<()> {
    use nova_db::server_groups::{self, NewServerGroup, Policy};
    let url = e2e::env::fresh_pg_database().await?;
    let db = connect(&url).await?;
    let new = NewServerGroup {
        name: "apart",
        project_id: "p1",
        user_id: "u1",
        policy: Policy::AntiAffinity,
        max_server_per_host: None,
    };
    let group = server_groups::create_within_quota(&db, &new, -1)
        .await?
        .ok_or_else(|| anyhow::anyhow!("no group"))?
        .uuid;
    let (a, _) = new_instance(&db, "a").await?;
    let (b, _) = new_instance(&db, "b").await?;
    let mut tx = db.begin().await?;
    server_groups::add_member(&mut tx, group, a.0).await?;
    server_groups::add_member(&mut tx, group, b.0).await?;
    tx.commit().await?;

    // a's claim holds the group and takes h1, not committed yet.
    let mut first = db.begin().await?;
    let seen = server_groups::lock_and_place(&mut first, group, a.0)
        .await?
        .ok_or_else(|| anyhow::anyhow!("group gone"))?;
    assert!(seen.allows("h1"));
    assert!(instances::assign_host(&mut first, a, "h1", "h1").await?);
    // b's waits for it...
    let other = db.clone();
    let waiting = tokio::spawn(async move {
        let mut tx = other.begin().await?;
        let seen = server_groups::lock_and_place(&mut tx, group, b.0).await?;
        Ok::<_, anyhow::Error>(seen)
    });
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert!(
        !waiting.is_finished(),
        "b's claim waits for the group's lock"
    );
    first.commit().await?;
    // ... and then sees a on h1: h1 is taken, h2 free.
    let seen = waiting
        .await??
        .ok_or_else(|| anyhow::anyhow!("group gone"))?;
    assert_eq!(seen.hosts.get("h1"), Some(&1), "{seen:?}");
    assert!(!seen.allows("h1") && seen.allows("h2"));
    Ok(())
}

on_both_backends!(the_catalog_keeps_regions_services_and_endpoints);
/// The catalog's SQL on both backends: filters, the bootstrap's upsert (a URL that follows the
/// configuration), a region in use kept, a region deleted with the ones below it, a service
/// with its endpoints, and policies.
async fn the_catalog_keeps_regions_services_and_endpoints(db: Db) -> anyhow::Result<()> {
    use nova_db::catalog::{self as cat, Endpoint, EndpointFilter, Region, RegionDelete, Service};
    let region = |id: &str, parent: Option<&str>| Region {
        id: id.into(),
        description: String::new(),
        parent_region_id: parent.map(str::to_owned),
        extra: "{}".into(),
    };
    assert!(cat::create_region(&db, &region("r1", None)).await?);
    assert!(
        !cat::create_region(&db, &region("r1", None)).await?,
        "taken"
    );
    assert!(cat::create_region(&db, &region("r2", Some("r1"))).await?);
    assert!(cat::create_region(&db, &region("r3", Some("r2"))).await?);
    assert_eq!(cat::regions(&db, Some("r1")).await?.len(), 1);
    assert_eq!(cat::regions(&db, None).await?.len(), 3);
    let service = Service {
        id: "s1".into(),
        kind: "volumev3".into(),
        enabled: true,
        extra: r#"{"name": "cinder"}"#.into(),
    };
    cat::create_service(&db, &service).await?;
    assert!(!cat::ensure_service(&db, &service).await?, "exists");
    let endpoint = |id: &str, interface: &str, url: &str| Endpoint {
        id: id.into(),
        service_id: "s1".into(),
        interface: interface.into(),
        region_id: Some("r3".into()),
        url: url.into(),
        enabled: true,
        extra: "{}".into(),
    };
    cat::create_endpoint(&db, &endpoint("e1", "public", "https://a")).await?;
    cat::ensure_endpoint(&db, &endpoint("e2", "internal", "https://b")).await?;
    cat::ensure_endpoint(&db, &endpoint("e2", "internal", "https://c")).await?;
    assert_eq!(
        cat::endpoint(&db, "e2").await?.map(|e| e.url).as_deref(),
        Some("https://c"),
        "the URL follows the configuration"
    );
    // So does the region (a renamed `auth.region`).
    assert!(cat::create_region(&db, &region("r4", None)).await?);
    cat::ensure_endpoint(
        &db,
        &Endpoint {
            region_id: Some("r4".into()),
            ..endpoint("e2", "internal", "https://c")
        },
    )
    .await?;
    assert_eq!(
        cat::endpoint(&db, "e2")
            .await?
            .and_then(|e| e.region_id)
            .as_deref(),
        Some("r4")
    );
    cat::ensure_endpoint(&db, &endpoint("e2", "internal", "https://c")).await?;
    let f = EndpointFilter {
        interface: Some("public"),
        ..Default::default()
    };
    assert_eq!(cat::endpoints(&db, &f).await?.len(), 1);
    let f = EndpointFilter {
        service_id: Some("s1"),
        region_id: Some("r3"),
        ..Default::default()
    };
    assert_eq!(cat::endpoints(&db, &f).await?.len(), 2);
    assert_eq!(cat::enabled_catalog(&db).await?[0].1.len(), 2);
    assert_eq!(cat::delete_region(&db, "r1").await?, RegionDelete::InUse);
    assert_eq!(
        cat::delete_region(&db, "nope").await?,
        RegionDelete::NotFound
    );
    assert!(cat::delete_service(&db, "s1").await?);
    assert!(
        cat::endpoint(&db, "e1").await?.is_none(),
        "gone with its service"
    );
    assert_eq!(cat::delete_region(&db, "r1").await?, RegionDelete::Deleted);
    let left: Vec<String> = cat::regions(&db, None)
        .await?
        .into_iter()
        .map(|r| r.id)
        .collect();
    assert_eq!(left, vec!["r4".to_owned()], "the ones below it went too");

    use nova_db::identity::{self as id, Policy};
    id::create_policy(
        &db,
        &Policy {
            id: "p1".into(),
            kind: "application/json".into(),
            blob: "{}".into(),
            extra: "{}".into(),
        },
    )
    .await?;
    assert_eq!(id::policies(&db, Some("application/json")).await?.len(), 1);
    assert!(id::policies(&db, Some("text/plain")).await?.is_empty());
    assert!(id::delete_policy(&db, "p1").await?);
    Ok(())
}

on_both_backends!(identity_and_metadefs_sql_runs_on_both_backends);
/// The SQL of the twelfth session's identity and image additions on both backends: credentials,
/// application credentials (a name unique per user), endpoint groups and their associations,
/// nested projects, and Glance's metadata definitions (a namespace with its association and
/// items, visibility, a rename, items replaced and the namespace deleted with them).
async fn identity_and_metadefs_sql_runs_on_both_backends(db: Db) -> anyhow::Result<()> {
    use nova_db::catalog::{self as cat, Association, EndpointGroup};
    use nova_db::identity::{self as id, AppCredential, Credential, Domain, Project, User};
    use nova_db::metadefs::{self as md, Item, Kind, Namespace};
    id::create_domain(
        &db,
        &Domain {
            id: "default".into(),
            name: "Default".into(),
            description: String::new(),
            enabled: true,
        },
    )
    .await
    .ok();
    let project = |pid: &str, parent: Option<&str>| Project {
        id: pid.into(),
        name: pid.into(),
        domain_id: "default".into(),
        description: String::new(),
        enabled: true,
        parent_id: parent.map(str::to_owned),
    };
    id::create_project(&db, &project("pa", None)).await?;
    id::create_project(&db, &project("pb", Some("pa"))).await?;
    assert_eq!(
        id::project(&db, "pb")
            .await?
            .and_then(|p| p.parent_id)
            .as_deref(),
        Some("pa")
    );
    id::create_user(
        &db,
        &User {
            id: "u1".into(),
            name: "u1".into(),
            domain_id: "default".into(),
            enabled: true,
            email: None,
            default_project_id: None,
            password_hash: None,
            extra: "{}".into(),
        },
    )
    .await?;
    let cred = Credential {
        id: "c1".into(),
        user_id: "u1".into(),
        project_id: Some("pb".into()),
        kind: "ec2".into(),
        encrypted_blob: "v1:x".into(),
        extra: "{}".into(),
    };
    assert!(id::create_credential(&db, &cred).await?);
    assert!(!id::create_credential(&db, &cred).await?, "the id is taken");
    assert_eq!(
        id::credentials(&db, Some("u1"), Some("ec2")).await?.len(),
        1
    );
    let app = AppCredential {
        id: "a1".into(),
        name: "ci".into(),
        user_id: "u1".into(),
        project_id: "pb".into(),
        secret_hash: "h".into(),
        description: None,
        expires_at_us: Some(1),
        unrestricted: false,
        roles: "[]".into(),
    };
    assert!(id::create_app_credential(&db, &app).await?);
    assert!(
        !id::create_app_credential(
            &db,
            &AppCredential {
                id: "a2".into(),
                ..app.clone()
            }
        )
        .await?,
        "a name is unique per user"
    );
    assert_eq!(id::app_credentials(&db, "u1", Some("ci")).await?.len(), 1);
    let group = EndpointGroup {
        id: "g1".into(),
        name: "internal".into(),
        description: None,
        filters: r#"{"interface": "internal"}"#.into(),
    };
    cat::create_endpoint_group(&db, &group).await?;
    cat::associate(&db, Association::Group, "g1", "pb").await?;
    cat::associate(&db, Association::Group, "g1", "pb").await?;
    assert_eq!(
        cat::associations(&db, Association::Group, None, Some("pb"))
            .await?
            .len(),
        1
    );
    assert_eq!(cat::endpoints_of_project(&db, "pb").await?, Some(vec![]));
    // Deleting the project takes its credentials and associations.
    assert!(id::delete_project(&db, "pb").await?);
    assert!(id::credentials(&db, Some("u1"), None).await?.is_empty());
    assert!(id::app_credentials(&db, "u1", None).await?.is_empty());
    assert_eq!(cat::endpoints_of_project(&db, "pb").await?, None);

    // Metadata definitions.
    let viewer = |project: &'static str, admin: bool| nova_db::Viewer { project, admin };
    let ns = Namespace {
        id: "n1".into(),
        namespace: "Demo::CPU".into(),
        display_name: None,
        description: Some("d".into()),
        visibility: "private".into(),
        protected: false,
        owner: "pa".into(),
        created_at: 1,
        updated_at: 1,
    };
    let item = |name: &str| Item {
        name: name.into(),
        doc: r#"{"title": "T", "type": "string"}"#.into(),
        created_at: 1,
        updated_at: 1,
    };
    let assoc = md::Association {
        resource_type: "OS::Glance::Image".into(),
        prefix: Some("hw_".into()),
        properties_target: None,
        created_at: 1,
        updated_at: 1,
    };
    assert!(md::create_namespace(&db, &ns, &[assoc], &[(Kind::Property, item("p1"))]).await?);
    assert!(
        !md::create_namespace(&db, &ns, &[], &[]).await?,
        "the name is taken"
    );
    assert!(md::namespace(&db, "Demo::CPU", viewer("other", false))
        .await?
        .is_none());
    assert!(md::namespace(&db, "Demo::CPU", viewer("pa", false))
        .await?
        .is_some());
    let listed = md::namespaces(
        &db,
        viewer("x", true),
        Some("private"),
        &["OS::Glance::Image".to_owned()],
    )
    .await?;
    assert_eq!(listed.len(), 1);
    assert!(!md::add_item(&db, Kind::Property, "n1", &item("p1")).await?);
    assert!(md::add_item(&db, Kind::Tag, "n1", &item("t1")).await?);
    assert_eq!(
        md::replace_item(&db, Kind::Property, "n1", "p1", &item("p2")).await?,
        Some(true)
    );
    assert!(md::set_items(&db, Kind::Tag, "n1", &[item("a"), item("b")]).await?);
    assert_eq!(md::items(&db, Kind::Tag, "n1").await?.len(), 2);
    assert!(!md::set_items(&db, Kind::Tag, "n1", &[item("a"), item("a")]).await?);
    assert_eq!(md::items(&db, Kind::Tag, "n1").await?.len(), 2, "unchanged");
    let mut renamed = ns.clone();
    renamed.namespace = "Demo::Renamed".into();
    assert!(md::update_namespace(&db, &renamed).await?);
    md::delete_namespace(&db, "n1").await?;
    assert!(md::items(&db, Kind::Property, "n1").await?.is_empty());
    assert!(md::resource_types(&db).await?.len() >= 4);
    Ok(())
}
