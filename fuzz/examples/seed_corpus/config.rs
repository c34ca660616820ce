//! `config` seeds: the deployed example, the shapes of configuration the tests use, and a few
//! wrong ones.

use crate::shared::Seeds;

pub fn seeds() -> Seeds {
    let texts: [(&str, &str); 8] = [
        ("deploy", include_str!("../../../deploy/vfnvme.toml")),
        (
            "ram",
            "[target]\ncores = 2\n\n[[listener]]\naddress = \"127.0.0.1:0\"\n\n[[subsystem]]\n\
             nqn = \"nqn.2026-11.io.vfnvme:ram0\"\nallow_any_host = true\n\n\
             [[subsystem.namespace]]\nnsid = 1\nram_mib = 16\n",
        ),
        (
            "sim-two-namespaces",
            "[target]\ncores = 1\nshutdown_deadline_ms = 500\n\n[[listener]]\n\
             address = \"127.0.0.1:0\"\n\n[[subsystem]]\nnqn = \"nqn.2026-11.io.vfnvme:sim\"\n\
             hosts = [\"nqn.2014-08.org.nvmexpress:uuid:host-a\"]\nserial = \"SIM0001\"\n\
             model = \"vfnvme sim\"\n\n[[subsystem.namespace]]\nnsid = 1\nsim_mib = 8\n\
             sim_latency_us = 20\n\n[[subsystem.namespace]]\nnsid = 2\nram_mib = 4\n\
             block_size = 4096\n",
        ),
        (
            "ipv6-limits",
            "[target]\nin_capsule_data_size = 0\nmax_queue_depth = 1024\nmax_io_queues = 1\n\
             max_io_size = 0\nkeep_alive_timeout_ms = 1\n\n[[listener]]\naddress = \"[::1]:4420\"\n\
             \n[[subsystem]]\nnqn = \"nqn.x\"\nallow_any_host = true\n\n[[subsystem.namespace]]\n\
             nsid = 4294967294\npci = \"0000:01:00.0\"\ndevice_nsid = 2\n",
        ),
        (
            "duplicate-nqn",
            "[[listener]]\naddress = \"0.0.0.0:4420\"\n\n[[subsystem]]\nnqn = \"nqn.a\"\n\
             allow_any_host = true\n[[subsystem.namespace]]\nnsid = 1\nram_mib = 1\n\n\
             [[subsystem]]\nnqn = \"nqn.a\"\nallow_any_host = true\n[[subsystem.namespace]]\n\
             nsid = 1\nram_mib = 1\n",
        ),
        (
            "bad-listener",
            "[[listener]]\naddress = \"localhost:4420\"\n\n[[subsystem]]\nnqn = \"nqn.a\"\n\
             allow_any_host = true\n[[subsystem.namespace]]\nnsid = 1\nram_mib = 1\n",
        ),
        (
            "out-of-range",
            "[target]\ncores = 0\nmax_queue_depth = 70000\nin_capsule_data_size = 7\n\n\
             [[listener]]\naddress = \"0.0.0.0:4420\"\n",
        ),
        ("not-toml", "[target\ncores = = 2\n"),
    ];
    texts
        .into_iter()
        .map(|(name, text)| (name.to_owned(), text.as_bytes().to_vec()))
        .collect()
}
