"""Shared helpers for the paho-mqtt (2.x) interoperability scripts.

Every script takes --port (and --protocol 311|5 where both apply), exits 0 and prints "OK" on
success, and exits 1 with "FAIL: <what>" on stderr otherwise. Every wait is bounded.
"""

import argparse
import queue
import socket
import sys
import traceback

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode
from paho.mqtt.subscribeoptions import SubscribeOptions

TIMEOUT = 5.0
QUIET = 0.3

__all__ = [
    "Client", "Failure", "PacketTypes", "Properties", "ReasonCode", "SubscribeOptions",
    "QUIET", "TIMEOUT", "check", "parse_args", "run",
]


class Failure(Exception):
    pass


def check(cond, what):
    if not cond:
        raise Failure(what)


def parse_args(description, protocols=("311", "5")):
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--protocol", choices=protocols, default=protocols[-1])
    return p.parse_args()


def run(fn):
    """Runs fn(); exit code 0 on success, 1 (with the reason) on any failure."""
    try:
        fn()
    except Failure as e:
        print(f"FAIL: {e}", file=sys.stderr)
        sys.exit(1)
    except Exception:  # an unexpected error is a failure too, with its traceback
        traceback.print_exc()
        print("FAIL: unexpected exception", file=sys.stderr)
        sys.exit(1)
    print("OK")
    sys.exit(0)


class Client:
    """A paho client with its network loop in a thread and queues for what it receives."""

    def __init__(self, args, client_id, clean=True, session_expiry=None, will=None):
        self.args = args
        self.id = client_id
        self.v5 = args.protocol == "5"
        kwargs = dict(
            callback_api_version=CallbackAPIVersion.VERSION2,
            client_id=client_id,
            protocol=mqtt.MQTTv5 if self.v5 else mqtt.MQTTv311,
        )
        if not self.v5:
            kwargs["clean_session"] = clean
        self.c = mqtt.Client(**kwargs)
        self.clean = clean
        self.session_expiry = session_expiry
        self.messages = queue.Queue()
        self.acks = queue.Queue()
        self.connacks = queue.Queue()
        self.disconnects = queue.Queue()
        self.c.on_connect = lambda c, u, flags, rc, props: self.connacks.put((flags, rc, props))
        self.c.on_message = lambda c, u, msg: self.messages.put(msg)
        self.c.on_subscribe = lambda c, u, mid, rcs, props: self.acks.put(("suback", mid, rcs))
        self.c.on_unsubscribe = lambda c, u, mid, rcs, props: self.acks.put(("unsuback", mid, rcs))
        self.c.on_disconnect = lambda c, u, flags, rc, props: self.disconnects.put(rc)
        if will is not None:
            topic, payload, qos, retain, props = will
            self.c.will_set(topic, payload, qos, retain, props)
        self.connack = None

    def connect(self):
        props = None
        if self.v5 and self.session_expiry is not None:
            props = Properties(PacketTypes.CONNECT)
            props.SessionExpiryInterval = self.session_expiry
        kwargs = {"keepalive": 30}
        if self.v5:
            kwargs["clean_start"] = self.clean
            kwargs["properties"] = props
        self.c.connect(self.args.host, self.args.port, **kwargs)
        self.c.loop_start()
        try:
            flags, rc, props = self.connacks.get(timeout=TIMEOUT)
        except queue.Empty:
            raise Failure(f"{self.id}: no CONNACK within {TIMEOUT}s")
        check(not rc.is_failure, f"{self.id}: CONNACK refused: {rc}")
        self.connack = (flags, rc, props)
        return self

    @property
    def session_present(self):
        return bool(self.connack[0].session_present)

    def _wait_ack(self, kind, mid):
        while True:
            try:
                k, m, rcs = self.acks.get(timeout=TIMEOUT)
            except queue.Empty:
                raise Failure(f"{self.id}: no {kind} for mid {mid} within {TIMEOUT}s")
            if k == kind and m == mid:
                return rcs

    def subscribe(self, topic, qos=1, options=None, props=None):
        """Subscribes; returns the granted QoS (panics on a failure reason code)."""
        if self.v5:
            options = options if options is not None else SubscribeOptions(qos=qos)
            res, mid = self.c.subscribe(topic, options=options, properties=props)
        else:
            res, mid = self.c.subscribe(topic, qos)
        check(res == mqtt.MQTT_ERR_SUCCESS, f"{self.id}: subscribe({topic}) failed: {res}")
        rcs = self._wait_ack("suback", mid)
        check(not rcs[0].is_failure, f"{self.id}: SUBACK for {topic}: {rcs[0]}")
        return rcs[0].value

    def unsubscribe(self, topic):
        res, mid = self.c.unsubscribe(topic)
        check(res == mqtt.MQTT_ERR_SUCCESS, f"{self.id}: unsubscribe failed: {res}")
        self._wait_ack("unsuback", mid)

    def publish(self, topic, payload, qos=1, retain=False, props=None):
        """Publishes and waits for the end of the QoS flow (PUBACK / PUBCOMP)."""
        info = self.c.publish(topic, payload, qos, retain, props)
        info.wait_for_publish(timeout=TIMEOUT)
        check(info.is_published(), f"{self.id}: publish to {topic} not completed within {TIMEOUT}s")

    def recv(self, timeout=TIMEOUT):
        try:
            return self.messages.get(timeout=timeout)
        except queue.Empty:
            raise Failure(f"{self.id}: no message within {timeout}s")

    def expect_nothing(self, timeout=QUIET):
        try:
            m = self.messages.get(timeout=timeout)
        except queue.Empty:
            return
        raise Failure(f"{self.id}: unexpected message on {m.topic}: {m.payload!r}")

    def disconnect(self, reason=None):
        if reason is not None:
            self.c.disconnect(reasoncode=reason)
        else:
            self.c.disconnect()
        try:
            self.disconnects.get(timeout=TIMEOUT)
        except queue.Empty:
            pass
        self.c.loop_stop()

    def kill(self):
        """Ends the TCP connection without DISCONNECT (abnormal close)."""
        sock = self.c.socket()
        self.c.loop_stop()
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            sock.close()
