//! The listen interface the agent creates for its addresses, in a lab
//! namespace of its own: created, kept or removed, and never a link that
//! is not ours.

use std::net::{IpAddr, SocketAddr};

use nodedns_tests::internals::{ListenInterface, Netlink, if_index, remove_listen_interface};
use nodedns_tests::lab::{LISTEN_V4, Netns};

#[test]
fn listen_interface_is_created_and_removed_in_a_netns() {
    let ns = Netns::create("listen").unwrap();
    ns.enter(|| {
        // With lo down a namespace has no local table, and the kernel lets
        // any address bind; make sure lo is up so the checks mean something.
        Netlink::open()
            .unwrap()
            .set_up(if_index("lo").unwrap())
            .unwrap();
        let addr: IpAddr = LISTEN_V4.into();
        let bindable = |a: IpAddr| std::net::UdpSocket::bind(SocketAddr::new(a, 0)).is_ok();
        assert!(!bindable(addr));
        let mut iface = ListenInterface::setup("nodedns-t0", &[addr], false).expect("setup");
        assert!(bindable(addr), "listen address is local after setup");
        // Either our dummy link exists, or (no dummy driver) we fell back to lo.
        let on_dummy = if_index("nodedns-t0").is_some();
        iface.cleanup();
        assert!(!bindable(addr), "address removed on exit");
        assert!(if_index("nodedns-t0").is_none(), "link removed on exit");
        // Kept for a restart: nothing removed.
        let mut kept = ListenInterface::setup("nodedns-t0", &[addr], true).expect("setup");
        kept.cleanup();
        assert!(bindable(addr), "kept on exit");
        assert_eq!(if_index("nodedns-t0").is_some(), on_dummy);
        // `dns-agent cleanup` removes what the kept agent left.
        remove_listen_interface("nodedns-t0", &[addr]).expect("cleanup");
        assert!(!bindable(addr), "cleanup removed the address");
        assert!(if_index("nodedns-t0").is_none(), "cleanup removed the link");
        // A name that is not a dummy link is never deleted, only our addresses.
        let mut again = ListenInterface::setup("nodedns-t0", &[addr], true).expect("setup");
        again.cleanup();
        remove_listen_interface("lo", &[addr]).expect("cleanup by lo");
        assert!(if_index("lo").is_some(), "lo is never deleted");
        remove_listen_interface("nodedns-t0", &[addr]).expect("idempotent");
        assert!(!bindable(addr));
        // Link kinds are read from the kernel: a veth is never deleted.
        ns.add_veth("nd-t0a", "nd-t0b").unwrap();
        let veth = if_index("nd-t0a").unwrap();
        let mut nl = Netlink::open().unwrap();
        assert_eq!(nl.link_kind(veth).unwrap().as_deref(), Some("veth"));
        assert_eq!(nl.link_kind(if_index("lo").unwrap()).unwrap(), None);
        remove_listen_interface("nd-t0a", &[addr]).expect("cleanup");
        assert!(if_index("nd-t0a").is_some(), "a veth is not ours to delete");
    })
    .unwrap();
}
