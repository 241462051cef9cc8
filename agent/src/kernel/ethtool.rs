//! Transmit checksum offload of the VXLAN device, through the SIOCETHTOOL ioctl.
//!
//! Why off: with offload on, some NICs pass only ICMP through VXLAN and recent kernels drop to a
//! fraction of line rate; computing the inner checksum in software is cheap and always right.

use std::io;

const SIOCETHTOOL: libc::c_ulong = 0x8946;
const ETHTOOL_GTXCSUM: u32 = 0x16;
const ETHTOOL_STXCSUM: u32 = 0x17;

#[repr(C)]
struct EthtoolValue {
    cmd: u32,
    data: u32,
}

#[repr(C)]
struct IfReq {
    name: [libc::c_char; libc::IFNAMSIZ],
    data: *mut EthtoolValue,
    _pad: [u8; 16],
}

fn call(device: &str, command: u32, data: u32) -> io::Result<u32> {
    if device.len() >= libc::IFNAMSIZ || device.contains('\0') {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "bad device name",
        ));
    }
    let mut value = EthtoolValue { cmd: command, data };
    let mut request = IfReq {
        name: [0; libc::IFNAMSIZ],
        data: &mut value,
        _pad: [0; 16],
    };
    for (slot, byte) in request.name.iter_mut().zip(device.bytes()) {
        *slot = byte as libc::c_char;
    }
    // SAFETY: a datagram socket used for one ioctl whose argument outlives the call.
    unsafe {
        let socket = libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0);
        if socket < 0 {
            return Err(io::Error::last_os_error());
        }
        // The request's type is libc's `Ioctl`: c_ulong with glibc, c_int with musl.
        let result = libc::ioctl(socket, SIOCETHTOOL as _, &mut request);
        let error = io::Error::last_os_error();
        libc::close(socket);
        if result < 0 {
            return Err(error);
        }
    }
    Ok(value.data)
}

/// Whether transmit checksum offload is on (call from inside the device's namespace).
pub fn tx_checksum(device: &str) -> io::Result<bool> {
    call(device, ETHTOOL_GTXCSUM, 0).map(|data| data != 0)
}

/// Turns transmit checksum offload on or off (from inside the device's namespace).
pub fn set_tx_checksum(device: &str, on: bool) -> io::Result<()> {
    call(device, ETHTOOL_STXCSUM, u32::from(on)).map(drop)
}
