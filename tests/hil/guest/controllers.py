"""Two Bumble software controllers on /dev/vhci, joined by one simulated LE link.

Run inside the HIL guest (docs/HIL.md): the kernel sees hci0 (the gateway's adapter) and hci1
(the simulated peripheral's adapter, driven by `vectorcare-gateway simulate --target ble:hci1`).
Two vhci controllers share no radio by themselves; Bumble's controller model plays the link
layer between them (advertising, connection, ACL data).

usage: python controllers.py <public-address-hci0> <public-address-hci1>

Prints "controllers ready" once both vhci devices are open.
"""

import asyncio
import logging
import os
import sys

from bumble import core
from bumble.controller import Controller
from bumble.link import LocalLink
from bumble.transport import open_transport


class HilLink(LocalLink):
    """LocalLink that sends LE ACL data from the address the connection was made with.

    Bumble's LocalLink always uses the sender's *random* address as the source of LE ACL
    data, but Linux connects and advertises with the controller's *public* address, so the
    receiving controller finds no connection for the data ("no connection for ...") and the
    GATT exchange never starts. The connection's own `self_address` is the right source.
    """

    def send_acl_data(self, sender_controller, destination_address, transport, data):
        if transport == core.PhysicalTransport.LE:
            connection = sender_controller.le_connections.get(destination_address)
            destination = self.find_le_controller(destination_address)
            if connection is not None and destination is not None:
                source = connection.self_address
                asyncio.get_running_loop().call_soon(
                    lambda: destination.on_link_acl_data(source, transport, data)
                )
                return
        super().send_acl_data(sender_controller, destination_address, transport, data)


async def main(addresses):
    link = HilLink()
    transports = []
    for index, address in enumerate(addresses):
        # Opened one after the other so the kernel numbers them hci0, hci1 in this order.
        transport = await open_transport("vhci")
        transports.append(transport)
        Controller(
            f"hci{index}",
            host_source=transport.source,
            host_sink=transport.sink,
            link=link,
            public_address=address,
        )
        await asyncio.sleep(0.2)
    print("controllers ready", flush=True)
    await asyncio.get_running_loop().create_future()


if __name__ == "__main__":
    if len(sys.argv) != 3:
        print(__doc__, file=sys.stderr)
        sys.exit(64)
    debug = bool(os.environ.get("HIL_BUMBLE_DEBUG"))
    logging.basicConfig(level=logging.DEBUG if debug else logging.WARNING, format="bumble %(levelname)s %(name)s: %(message)s")
    asyncio.run(main(sys.argv[1:]))
