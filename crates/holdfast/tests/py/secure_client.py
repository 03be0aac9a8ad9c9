"""paho-mqtt over TLS and/or WebSocket, with optional client certificate and user name.

With --expect 0 (default): connect, subscribe, publish QoS 1 and receive it back.
With --expect N: the CONNACK must refuse with reason code N (MQTT 5 numbering; paho maps the
3.1.1 return codes 4 and 5 to 0x86 and 0x87). With --expect tls-error the TLS handshake must fail.
"""

import argparse
import queue
import ssl
import sys

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from common import TIMEOUT, check, run

p = argparse.ArgumentParser()
p.add_argument("--port", type=int, required=True)
p.add_argument("--host", default="127.0.0.1")
p.add_argument("--protocol", choices=("311", "5"), default="5")
p.add_argument("--transport", choices=("tcp", "websockets"), default="tcp")
p.add_argument("--path", default="/mqtt")
p.add_argument("--ca")
p.add_argument("--cert")
p.add_argument("--key")
p.add_argument("--username")
p.add_argument("--password")
p.add_argument("--client-id", default="secure-client")
p.add_argument("--topic", default="secure/test")
p.add_argument("--expect", default="0")
args = p.parse_args()


def main():
    v5 = args.protocol == "5"
    c = mqtt.Client(
        callback_api_version=CallbackAPIVersion.VERSION2,
        client_id=args.client_id,
        protocol=mqtt.MQTTv5 if v5 else mqtt.MQTTv311,
        transport=args.transport,
    )
    if args.transport == "websockets":
        c.ws_set_options(path=args.path)
    if args.ca:
        c.tls_set(ca_certs=args.ca, certfile=args.cert, keyfile=args.key,
                  tls_version=ssl.PROTOCOL_TLS_CLIENT)
    if args.username:
        c.username_pw_set(args.username, args.password)
    connacks, messages, subacks = queue.Queue(), queue.Queue(), queue.Queue()
    c.on_connect = lambda cl, u, flags, rc, props: connacks.put(rc)
    c.on_message = lambda cl, u, msg: messages.put(msg)
    c.on_subscribe = lambda cl, u, mid, rcs, props: subacks.put(rcs)
    try:
        c.connect(args.host, args.port, keepalive=30)
    except (ssl.SSLError, OSError) as e:
        check(args.expect == "tls-error", f"connect failed: {e!r}")
        return
    c.loop_start()
    try:
        try:
            rc = connacks.get(timeout=TIMEOUT)
        except queue.Empty:
            check(args.expect == "tls-error", "no CONNACK")
            return
        check(args.expect != "tls-error", "TLS handshake succeeded, expected it to fail")
        want = int(args.expect, 0)
        check(rc.value == want, f"CONNACK reason {rc.value:#x}, expected {want:#x}")
        if want != 0:
            return
        c.subscribe(args.topic, qos=1)
        rcs = subacks.get(timeout=TIMEOUT)
        check(rcs[0].value == 1, f"SUBACK {rcs}")
        c.publish(args.topic, b"over " + args.transport.encode(), qos=1)
        msg = messages.get(timeout=TIMEOUT)
        check(msg.topic == args.topic and msg.payload == b"over " + args.transport.encode(),
              f"received {msg.topic} {msg.payload!r}")
        c.disconnect()
    finally:
        c.loop_stop()


run(main)
