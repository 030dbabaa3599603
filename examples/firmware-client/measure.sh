#!/usr/bin/env bash
# Builds the firmware (release, without defmt) in its two variants, and a
# baseline without the protocol client; prints flash, static RAM and the
# client's share of flash, and fails when a budget is exceeded:
#   version 3 (the default build): at most 40 KiB flash, 8 KiB static RAM
#     plus the two record buffers (the transfer buffer counts in the 8 KiB)
#   plaintext (--features plaintext): at most 16 KiB flash, 4 KiB static
#     RAM plus the transfer buffer; the core's client at most 4 KiB flash
# Flash counts .vector_table + .text + .rodata; static RAM .data + .bss + .uninit.
set -euo pipefail
cd "$(dirname "$0")"

V3_FLASH_BUDGET=$((40 * 1024))
FLASH_BUDGET=$((16 * 1024))
CLIENT_BUDGET=$((4 * 1024))
const() { sed -n "s/^const $1: [a-z0-9]* = \([0-9]*\);/\1/p" src/main.rs; }
TRANSFER_BUF=$(const TRANSFER_BUF_LEN)
RECORD_RX=$(const RECORD_RX_LEN)
RECORD_TX=$(const RECORD_TX_LEN)
RAM_BUDGET=$((4 * 1024 + TRANSFER_BUF))
V3_RAM_BUDGET=$((8 * 1024 + RECORD_RX + RECORD_TX))

cargo build --release --locked --quiet
cargo build --release --locked --quiet --features plaintext --target-dir target/plaintext
cargo build --release --locked --quiet --features baseline --target-dir target/baseline
cargo build --release --locked --quiet --features async --target-dir target/async

sizes() {
  arm-none-eabi-size -A "$1" | awk '
    $1 == ".vector_table" || $1 == ".text" || $1 == ".rodata" { flash += $2 }
    $1 == ".data" || $1 == ".bss" || $1 == ".uninit" { ram += $2 }
    END { print flash + 0, ram + 0 }'
}
v3=target/thumbv7m-none-eabi/release/firmware-client
full=target/plaintext/thumbv7m-none-eabi/release/firmware-client
base=target/baseline/thumbv7m-none-eabi/release/firmware-client
read -r v3_flash v3_ram < <(sizes "$v3")
read -r flash ram < <(sizes "$full")
read -r base_flash _ < <(sizes "$base")
client=$((flash - base_flash))
# The compiler's memory routines, which the baseline links too.
memroutines() {
  arm-none-eabi-nm -S "$1" | python3 -c '
import re, sys
print(sum(int(f[1], 16) for f in map(str.split, sys.stdin)
          if len(f) == 4 and re.search(r"mem(cpy|set|clr|cmp|move)", f[3])))'
}
mem_full=$(memroutines "$full")

status=0
check() { # name value budget
  local verdict=ok
  if (($2 > $3)); then verdict="OVER BUDGET"; status=1; fi
  printf '%-28s %7d bytes   budget %7d   %s\n' "$1" "$2" "$3" "$verdict"
}
echo "firmware-client, protocol version 3 (thumbv7m-none-eabi, release, no defmt):"
check "flash" "$v3_flash" "$V3_FLASH_BUDGET"
check "static RAM" "$v3_ram" "$V3_RAM_BUDGET"
echo "(static RAM includes the ${RECORD_RX}- and ${RECORD_TX}-byte record buffers and the ${TRANSFER_BUF}-byte"
echo " transfer buffer; the budget is 8 KiB plus the record buffers.)"
if ((v3_flash > V3_FLASH_BUDGET)); then
  echo "largest symbols of the version-3 build:"
  arm-none-eabi-nm -S --size-sort -C "$v3" | tail -15
fi
echo "firmware-client, plaintext (--features plaintext):"
check "flash" "$flash" "$FLASH_BUDGET"
check "static RAM" "$ram" "$RAM_BUDGET"
check "core client share of flash" "$client" "$CLIENT_BUDGET"
echo "(static RAM includes the ${TRANSFER_BUF}-byte transfer buffer. The client share is the flash"
echo " difference to a build that sends the same data without the client; both link the compiler's"
echo " memory routines, ${mem_full} bytes here, which a build with nothing else to copy would not.)"
read -r async_flash async_ram < <(sizes target/async/thumbv7m-none-eabi/release/firmware-client)
echo "the async build (plaintext, same steps through the async client on embassy-executor), reported beside:"
printf '%-28s %7d bytes   (blocking %d)\n' "flash" "$async_flash" "$flash"
printf '%-28s %7d bytes   (blocking %d)\n' "static RAM" "$async_ram" "$ram"
exit $status
