#!/usr/bin/env python3
"""Checks oxrmi's gRPC bridge from an ordinary Python gRPC client (grpcio).

Run by tests/suite/grpc_python.rs against `oxrmi-test-peer serve-grpc`, whose registry holds
`counter`, `bank`, `hub` and `versioned`:

    python bridge_test.py --address 127.0.0.1:PORT --protos DIR --out GENDIR

DIR holds the .proto files `oxrmi proto ENDPOINT --out DIR` wrote while an account was open
(an interface has a .proto only while an object of it exists). The checks, one line each:

  a. typed stubs: the .proto files compile with a stock protoc (grpc_tools.protoc) into GENDIR,
     and the generated stubs call the counter, the bank and the accounts it returns by
     reference, the registry; application errors, deadlines and object selection by metadata;
  b. a generic client that knows nothing but the address: server reflection, dynamic calls,
     a malformed body and an unknown method;
  c. the standard health service.

Exit status 0 only if every check passed.
"""

import argparse
import glob
import os
import subprocess
import sys
import time
import traceback

import grpc

# Every call is bounded: a hung bridge fails a check, it does not hang the test.
TIMEOUT = 10.0

RESULTS = []


def check(name):
    """Runs the decorated function as one check, now, and records its outcome."""

    def run(fn):
        try:
            detail = fn()
        except Exception as e:  # noqa: BLE001 - a failed check of any kind is reported
            print(f"FAIL {name}: {type(e).__name__}: {e}", flush=True)
            traceback.print_exc(file=sys.stdout)
            RESULTS.append(False)
        else:
            suffix = f" ({detail})" if detail else ""
            print(f"ok   {name}{suffix}", flush=True)
            RESULTS.append(True)
        return fn

    return run


def expect_error(code, call, *args, **kwargs):
    """Calls `call` and returns the grpc.RpcError it raised, which must have `code`."""
    try:
        call(*args, **kwargs)
    except grpc.RpcError as e:
        assert e.code() == code, f"expected {code}, got {e.code()}: {e.details()}"
        return e
    raise AssertionError(f"expected {code}, the call succeeded")


def generate(protos, out):
    """Compiles every .proto under `protos` into Python modules under `out`."""
    files = sorted(
        os.path.relpath(p, protos)
        for p in glob.glob(os.path.join(protos, "**", "*.proto"), recursive=True)
    )
    assert files, f"no .proto files under {protos}"
    os.makedirs(out, exist_ok=True)
    cmd = [
        sys.executable, "-m", "grpc_tools.protoc",
        "-I", protos, "--python_out", out, "--grpc_python_out", out, *files,
    ]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, f"protoc failed ({r.returncode}):\n{r.stdout}{r.stderr}"
    sys.path.insert(0, out)
    return files


def typed(channel, protos, out):
    """Part a: stubs generated from the emitted .proto files."""

    @check("a: protoc compiles every emitted .proto")
    def _():
        return ", ".join(generate(protos, out))

    import importlib

    counter_pb2 = importlib.import_module("oxrmi.test.counter_pb2")
    counter_grpc = importlib.import_module("oxrmi.test.counter_pb2_grpc")
    bank_pb2 = importlib.import_module("oxrmi.test.bank_pb2")
    bank_grpc = importlib.import_module("oxrmi.test.bank_pb2_grpc")
    account_pb2 = importlib.import_module("oxrmi.test.account_pb2")
    account_grpc = importlib.import_module("oxrmi.test.account_pb2_grpc")
    registry_pb2 = importlib.import_module("oxrmi.registry_pb2")
    registry_grpc = importlib.import_module("oxrmi.registry_pb2_grpc")
    from grpc_status import rpc_status

    counter = counter_grpc.CounterStub(channel)
    bank = bank_grpc.BankStub(channel)
    account = account_grpc.AccountStub(channel)
    registry = registry_grpc.RegistryStub(channel)

    @check("a: Counter.Add twice (the counter is shared: relative increase)")
    def _():
        before = counter.Get(counter_pb2.GetRequest(), timeout=TIMEOUT).result
        a = counter.Add(counter_pb2.AddRequest(n=5), timeout=TIMEOUT).result
        b = counter.Add(counter_pb2.AddRequest(n=10), timeout=TIMEOUT).result
        assert a >= before + 5, (before, a)
        assert b >= a + 10, (a, b)
        return f"{before} -> {a} -> {b}"

    @check("a: Counter.Echo with bytes")
    def _():
        data = bytes(range(256)) * 3
        reply = counter.Echo(counter_pb2.EchoRequest(tag=42, data=data, micros=0), timeout=TIMEOUT)
        assert (reply.result.item0, reply.result.item1) == (42, len(data)), reply
        return f"({reply.result.item0}, {reply.result.item1})"

    @check("a: Counter.Divide(by=0) is UNKNOWN with a DivideAppError in the details")
    def _():
        e = expect_error(
            grpc.StatusCode.UNKNOWN, counter.Divide, counter_pb2.DivideRequest(by=0), timeout=TIMEOUT
        )
        status = rpc_status.from_call(e)
        assert status is not None, "no grpc-status-details-bin"
        assert len(status.details) == 1, status
        detail = status.details[0]
        assert detail.type_url.endswith("/oxrmi.test.counter.DivideAppError"), detail.type_url
        app = counter_pb2.DivideAppError()
        assert detail.Unpack(app), "the Any does not unpack into DivideAppError"
        assert app.error.WhichOneof("value") == "divide_by_zero", app
        return detail.type_url

    @check("a: Counter.Divide(by=2) succeeds")
    def _():
        value = counter.Get(counter_pb2.GetRequest(), timeout=TIMEOUT).result
        got = counter.Divide(counter_pb2.DivideRequest(by=2), timeout=TIMEOUT).result
        # Values only grow here, and Rust divides towards zero.
        assert got >= int(value / 2), (value, got)

    @check("a: Counter.Sleep(3000) with a 0.3 s deadline is DEADLINE_EXCEEDED at once")
    def _():
        cancelled = counter.Cancelled(counter_pb2.CancelledRequest(), timeout=TIMEOUT).result
        start = time.monotonic()
        try:
            counter.Sleep(counter_pb2.SleepRequest(millis=3000), timeout=0.3)
            raise AssertionError("Sleep(3000) succeeded within 0.3 s")
        except grpc.RpcError as e:
            code, details = e.code(), e.details()
        took = time.monotonic() - start
        # The bridge ends the call just before tonic's own `grpc-timeout` timer would (which
        # reports CANCELLED "Timeout expired"), so the answer is DEADLINE_EXCEEDED either way.
        assert code == grpc.StatusCode.DEADLINE_EXCEEDED, f"{code}: {details}"
        assert took < 1.5, f"took {took:.2f} s"
        # The server stopped the sleep rather than letting it run out.
        end = time.monotonic() + 2.0
        while True:
            now = counter.Cancelled(counter_pb2.CancelledRequest(), timeout=TIMEOUT).result
            if now > cancelled or time.monotonic() > end:
                break
            time.sleep(0.05)
        assert now > cancelled, "the server's sleep was not stopped"
        return f"{took:.2f} s; the server's sleep was stopped"

    @check("a: Bank.Open returns an ObjectRef; Account calls with oxrmi-object")
    def _():
        ref = bank.Open(bank_pb2.OpenRequest(owner="py"), timeout=TIMEOUT).result
        assert ref.id, ref
        assert ref.interface == "oxrmi.test.Account", ref.interface
        other = bank.Open(bank_pb2.OpenRequest(owner="py2"), timeout=TIMEOUT).result
        assert other.id != ref.id, (ref, other)
        on = lambda r: [("oxrmi-object", r.id)]  # noqa: E731
        deposit = lambda r, n: account.Deposit(  # noqa: E731
            account_pb2.DepositRequest(amount=n), metadata=on(r), timeout=TIMEOUT
        ).result
        assert deposit(ref, 30) == 30
        assert deposit(ref, 12) == 42
        assert deposit(other, 1) == 1
        owner = account.Owner(account_pb2.OwnerRequest(), metadata=on(ref), timeout=TIMEOUT)
        assert owner.result == "py", owner
        owner = account.Owner(account_pb2.OwnerRequest(), metadata=on(other), timeout=TIMEOUT)
        assert owner.result == "py2", owner
        return f"ids {ref.id}, {other.id}"

    @check("a: Account without metadata (no account bound) is FAILED_PRECONDITION")
    def _():
        e = expect_error(
            grpc.StatusCode.FAILED_PRECONDITION,
            account.Owner, account_pb2.OwnerRequest(), timeout=TIMEOUT,
        )
        return e.details()

    @check("a: oxrmi-object: nonsense is INVALID_ARGUMENT")
    def _():
        e = expect_error(
            grpc.StatusCode.INVALID_ARGUMENT,
            counter.Get, counter_pb2.GetRequest(),
            metadata=[("oxrmi-object", "nonsense")], timeout=TIMEOUT,
        )
        return e.details()

    @check("a: oxrmi-name picks a bound object; an unbound name is NOT_FOUND")
    def _():
        value = counter.Get(
            counter_pb2.GetRequest(), metadata=[("oxrmi-name", "counter")], timeout=TIMEOUT
        ).result
        assert value >= 15, value
        e = expect_error(
            grpc.StatusCode.NOT_FOUND,
            counter.Get, counter_pb2.GetRequest(),
            metadata=[("oxrmi-name", "nosuchname")], timeout=TIMEOUT,
        )
        return e.details()

    @check("a: Registry.List names counter, bank, hub, versioned")
    def _():
        reply = registry.List(registry_pb2.ListRequest(), timeout=TIMEOUT)
        names = {b.name for b in reply.result}
        missing = {"counter", "bank", "hub", "versioned"} - names
        assert not missing, f"missing {missing} in {sorted(names)}"
        return ", ".join(sorted(names))


def generic(channel):
    """Part b: a client that knows nothing but the address."""
    from google.protobuf import descriptor_pool, json_format, message_factory
    from grpc_reflection.v1alpha.proto_reflection_descriptor_database import (
        ProtoReflectionDescriptorDatabase,
    )

    db = ProtoReflectionDescriptorDatabase(channel)
    pool = descriptor_pool.DescriptorPool(db)

    @check("b: reflection lists the services")
    def _():
        services = set(db.get_services())
        missing = {"oxrmi.test.counter.Counter", "oxrmi.registry.Registry"} - services
        assert not missing, f"missing {missing} in {sorted(services)}"
        return ", ".join(sorted(services))

    def method(service, name):
        """A callable for `service.name` that takes and returns JSON-like dicts."""
        m = pool.FindServiceByName(service).FindMethodByName(name)
        request = message_factory.GetMessageClass(m.input_type)
        reply = message_factory.GetMessageClass(m.output_type)
        call = channel.unary_unary(
            f"/{service}/{name}",
            request_serializer=request.SerializeToString,
            response_deserializer=reply.FromString,
        )
        return lambda body: json_format.MessageToDict(
            call(json_format.ParseDict(body, request()), timeout=TIMEOUT)
        )

    @check("b: Counter.Add and Counter.Get through reflection and JSON")
    def _():
        add = method("oxrmi.test.counter.Counter", "Add")
        get = method("oxrmi.test.counter.Counter", "Get")
        added = int(add({"n": 7})["result"])  # int64 is a string in JSON
        got = int(get({})["result"])
        assert got >= added, (added, got)
        return f"add -> {added}, get -> {got}"

    @check("b: a malformed body is INVALID_ARGUMENT")
    def _():
        raw = channel.unary_unary("/oxrmi.test.counter.Counter/Add")  # bytes in, bytes out
        return expect_error(
            grpc.StatusCode.INVALID_ARGUMENT, raw, b"\xff\xff\xff", timeout=TIMEOUT
        ).details()

    @check("b: an unknown method is UNIMPLEMENTED")
    def _():
        for path in ("/oxrmi.test.counter.Counter/NoSuchMethod", "/no.such.Service/Call"):
            raw = channel.unary_unary(path)
            expect_error(grpc.StatusCode.UNIMPLEMENTED, raw, b"", timeout=TIMEOUT)


def health(channel):
    """Part c: grpc.health.v1."""
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    stub = health_pb2_grpc.HealthStub(channel)

    @check("c: health of oxrmi.test.counter.Counter is SERVING")
    def _():
        reply = stub.Check(
            health_pb2.HealthCheckRequest(service="oxrmi.test.counter.Counter"), timeout=TIMEOUT
        )
        assert reply.status == health_pb2.HealthCheckResponse.SERVING, reply

    @check("c: health of an unknown service is NOT_FOUND")
    def _():
        expect_error(
            grpc.StatusCode.NOT_FOUND,
            stub.Check, health_pb2.HealthCheckRequest(service="no.such.Service"), timeout=TIMEOUT,
        )


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--address", required=True, help="the bridge's HOST:PORT")
    p.add_argument("--protos", required=True, help="the .proto files `oxrmi proto` wrote")
    p.add_argument("--out", required=True, help="where to generate the Python stubs")
    args = p.parse_args()

    # Straight to the address, whatever proxy the environment names.
    options = [("grpc.enable_http_proxy", 0)]
    with grpc.insecure_channel(args.address, options=options) as channel:
        grpc.channel_ready_future(channel).result(timeout=TIMEOUT)
        for part in (
            lambda: typed(channel, args.protos, args.out),
            lambda: generic(channel),
            lambda: health(channel),
        ):
            try:
                part()
            except Exception as e:  # noqa: BLE001 - e.g. an import the checks needed failed
                print(f"FAIL setup: {type(e).__name__}: {e}", flush=True)
                traceback.print_exc(file=sys.stdout)
                RESULTS.append(False)

    failed = RESULTS.count(False)
    print(f"{len(RESULTS) - failed} passed, {failed} failed", flush=True)
    return 0 if RESULTS and not failed else 1


if __name__ == "__main__":
    sys.exit(main())
