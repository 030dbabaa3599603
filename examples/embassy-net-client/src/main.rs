//! Firmware for a NUCLEO-F767ZI (STM32F767ZI, Cortex-M7) that backs files
//! up to a `backup-server` over the board's Ethernet: the on-chip MAC and
//! the LAN8742A PHY, embassy-net for TCP/IP with DHCP, and backup-core's
//! async client on embassy-net's `TcpSocket`, unchanged (see src/server.rs).
//!
//! It runs the QEMU firmware's steps (examples/firmware-client), on the
//! same generated files: back up a 64 KiB log and a config blob, list them,
//! restore each and check it as it streams in, delete one and check that it
//! is gone; then both again as pipelined batches. All on one connection.
//! Results go to the defmt log over RTT.

#![no_std]
#![no_main]

// The files and checksum the QEMU firmware uses, and their async
// source and sink: the same scenario, byte for byte.
#[path = "../../firmware-client/src/async_content.rs"]
mod async_content;
#[path = "../../firmware-client/src/content.rs"]
mod content;
mod scenario;
mod server;

use backup_core::async_client::AsyncClient;
use backup_core::wire::DEFAULT_PORT;
use embassy_executor::Spawner;
use embassy_net::{IpAddress, IpEndpoint, Ipv4Address, Runner, StackResources};
use embassy_stm32::eth::{self, Ethernet, GenericPhy, PacketQueue, Sma};
use embassy_stm32::peripherals::{ETH, ETH_SMA, RNG};
use embassy_stm32::rcc::mux::Clk48sel;
use embassy_stm32::rcc::{
    AHBPrescaler, APBPrescaler, Hse, HseMode, Pll, PllMul, PllPDiv, PllPreDiv, PllQDiv, PllSource, Sysclk,
};
use embassy_stm32::rng::{self, Rng};
use embassy_stm32::time::Hertz;
use embassy_stm32::{Config, bind_interrupts};
use static_cell::{ConstStaticCell, StaticCell};
use {defmt_rtt as _, panic_probe as _};

/// The server: set its address here. The port is the protocol's default.
const SERVER: Ipv4Address = Ipv4Address::new(192, 168, 1, 10);
/// A locally administered address; give each board its own.
const MAC_ADDR: [u8; 6] = [0x02, 0x00, 0x00, 0xC0, 0xFF, 0xEE];
/// The client's transfer buffer: payloads stream through it in chunks.
const TRANSFER_BUF_LEN: usize = 2048;
/// The socket's receive and send buffers (the TCP windows).
const SOCKET_BUF_LEN: usize = 4096;

bind_interrupts!(struct Irqs {
    ETH => eth::InterruptHandler;
    RNG => rng::InterruptHandler<RNG>;
});

type Device = Ethernet<'static, ETH, GenericPhy<Sma<'static, ETH_SMA>>>;

#[embassy_executor::task]
async fn net_task(mut runner: Runner<'static, Device>) -> ! {
    runner.run().await
}

#[embassy_executor::main]
async fn main(spawner: Spawner) {
    let p = embassy_stm32::init(clocks());

    static PACKETS: StaticCell<PacketQueue<4, 4>> = StaticCell::new();
    let device = Ethernet::new(
        PACKETS.init(PacketQueue::new()),
        p.ETH,
        Irqs,
        p.PA1,  // REF_CLK
        p.PA7,  // CRS_DV
        p.PC4,  // RXD0
        p.PC5,  // RXD1
        p.PG13, // TXD0
        p.PB13, // TXD1
        p.PG11, // TX_EN
        MAC_ADDR,
        p.ETH_SMA,
        p.PA2, // MDIO
        p.PC1, // MDC
    );

    // DHCP; for a fixed address use `Config::ipv4_static` (see README).
    let config = embassy_net::Config::dhcpv4(Default::default());
    let seed = Rng::new(p.RNG, Irqs).next_u64();
    static RESOURCES: StaticCell<StackResources<2>> = StaticCell::new();
    let (stack, runner) = embassy_net::new(device, config, RESOURCES.init(StackResources::new()), seed);
    match net_task(runner) {
        Ok(token) => spawner.spawn(token),
        Err(_) => defmt::panic!("network task"),
    }

    defmt::info!("waiting for the link and a DHCP lease");
    stack.wait_config_up().await;
    if let Some(v4) = stack.config_v4() {
        defmt::info!("address {}", v4.address);
    }

    static RX: ConstStaticCell<[u8; SOCKET_BUF_LEN]> = ConstStaticCell::new([0; SOCKET_BUF_LEN]);
    static TX: ConstStaticCell<[u8; SOCKET_BUF_LEN]> = ConstStaticCell::new([0; SOCKET_BUF_LEN]);
    static BUF: ConstStaticCell<[u8; TRANSFER_BUF_LEN]> = ConstStaticCell::new([0; TRANSFER_BUF_LEN]);
    let remote = IpEndpoint::new(IpAddress::Ipv4(SERVER), DEFAULT_PORT);
    let connector = server::Server::new(stack, remote, RX.take(), TX.take());
    let Ok(mut client) = AsyncClient::new(connector, content::USER_ID, BUF.take()) else {
        defmt::panic!("transfer buffer too small")
    };

    match scenario::run(&mut client).await {
        Ok(()) => defmt::info!("all steps passed"),
        Err(step) => defmt::error!("failed at {}", step),
    }
}

/// 216 MHz from the 8 MHz the ST-LINK feeds the HSE input (bypass):
/// 8 / 4 * 216 / 2, and 48 MHz (/ 9) for the RNG, which runs on the 48 MHz
/// clock. The buses at their limits: APB1 54 MHz, APB2 108 MHz.
fn clocks() -> Config {
    let mut config = Config::default();
    config.rcc.hse = Some(Hse { freq: Hertz(8_000_000), mode: HseMode::Bypass });
    config.rcc.pll_src = PllSource::HSE;
    config.rcc.pll = Some(Pll {
        prediv: PllPreDiv::DIV4,
        mul: PllMul::MUL216,
        divp: Some(PllPDiv::DIV2),
        divq: Some(PllQDiv::DIV9),
        divr: None,
    });
    config.rcc.sys = Sysclk::PLL1_P;
    config.rcc.mux.clk48sel = Clk48sel::PLL1_Q;
    config.rcc.ahb_pre = AHBPrescaler::DIV1;
    config.rcc.apb1_pre = APBPrescaler::DIV4;
    config.rcc.apb2_pre = APBPrescaler::DIV2;
    config
}
