// nova.conf files as operators had them, for tests. Not real deployments.

/** A Mitaka-era compute node: legacy flag lists with the tunnelled defaults, comments around them. */
export const MITAKA_COMPUTE_CONF = `# nova.conf for compute-07, managed by hand since the Liberty upgrade
[DEFAULT]
debug = False
state_path = /var/lib/nova
my_ip = 10.0.0.17
transport_url = rabbit://nova:secret@controller:5672/
; vnc settings
vnc_enabled = True

[api_database]
connection = mysql+pymysql://nova:secret@controller/nova_api

[libvirt]
# We moved to kvm in 2015.
virt_type = kvm
#live_migration_uri = qemu+tcp://%s/system
# Tunnelled because the storage network is not routed between racks.
live_migration_flag = VIR_MIGRATE_UNDEFINE_SOURCE, VIR_MIGRATE_PEER2PEER, VIR_MIGRATE_LIVE, VIR_MIGRATE_TUNNELLED
block_migration_flag = VIR_MIGRATE_UNDEFINE_SOURCE, VIR_MIGRATE_PEER2PEER,
    VIR_MIGRATE_LIVE, VIR_MIGRATE_TUNNELLED, VIR_MIGRATE_NON_SHARED_INC
live_migration_bandwidth = 0
live_migration_downtime = 500
live_migration_downtime_steps = 10
live_migration_downtime_delay = 75
live_migration_completion_timeout = 800
live_migration_progress_timeout = 150
images_type = default

[neutron]
url = http://controller:9696
auth_type = password
`;

/** An operator who turned tunnelling off and added flags that have no modern equivalent. */
export const HAND_TUNED_CONF = `[DEFAULT]
debug = true

[libvirt]
virt_type = kvm
live_migration_flag = VIR_MIGRATE_UNDEFINE_SOURCE,VIR_MIGRATE_PEER2PEER,VIR_MIGRATE_LIVE,VIR_MIGRATE_AUTO_CONVERGE,VIR_MIGRATE_UNSAFE,VIR_MIGRATE_PERSIST_DEST
block_migration_flag = VIR_MIGRATE_UNDEFINE_SOURCE,VIR_MIGRATE_PEER2PEER,VIR_MIGRATE_LIVE,VIR_MIGRATE_NON_SHARED_INC,VIR_MIGRATE_AUTO_CONVERGE
live_migration_permit_post_copy = false
cpu_mode = host-passthrough

[vmferry]
channels = 8
`;

/** A file written for today's nova: no legacy options. */
export const MODERN_CONF = `[DEFAULT]
debug = false

[libvirt]
virt_type = kvm
live_migration_with_native_tls = true
live_migration_permit_auto_converge = true
live_migration_completion_timeout = 800
live_migration_timeout_action = force_complete

[vmferry]
channels = 4
stall_timeout = 120
`;
