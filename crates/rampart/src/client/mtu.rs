//! The TUN device's MTU follows the path MTU the node finds (`Output::TunnelMtu`: probes,
//! ICMP "too big", black-hole fallback; see `rampart_node::pmtu`).
//!
//! Only the kernel's view changes: the I/O loop's buffers were sized for the profile's MTU,
//! the largest the node ever announces, so a lower MTU needs nothing else.

use rtnetlink::LinkUnspec;

/// Sets the MTU of device `dev` (rtnetlink `RTM_SETLINK`, its own short-lived connection: a
/// change is rare, a few per connection).
pub async fn set_device_mtu(dev: &str, mtu: u16) -> Result<(), String> {
    let index = rampart_io::vip::if_index(dev).map_err(|e| format!("device {dev}: {e}"))?;
    let (connection, handle, _) =
        rtnetlink::new_connection().map_err(|e| format!("netlink: {e}"))?;
    let task = tokio::spawn(connection);
    let result = handle
        .link()
        .set(
            LinkUnspec::new_with_index(index)
                .mtu(u32::from(mtu))
                .build(),
        )
        .execute()
        .await
        .map_err(|e| format!("cannot set the MTU of {dev} to {mtu}: {e}"));
    task.abort();
    result
}
