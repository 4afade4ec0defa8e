#!/usr/bin/env python3
"""A Python client of the grpc_interop example that knows nothing but the address.

It learns the services by server reflection and calls them with plain dicts (protobuf's JSON
mapping): no .proto, no generated code. Needs grpcio, grpcio-reflection and grpcio-status.

    cargo run --example grpc_interop -- --serve     # prints 127.0.0.1:PORT
    python3 examples/grpc_interop/client.py 127.0.0.1:PORT
"""

import re
import sys
import time

import grpc
from google.protobuf import descriptor_pool, json_format, message_factory
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import (
    ProtoReflectionDescriptorDatabase,
)
from grpc_status import rpc_status


class Bridge:
    """Calls any method the bridge serves, by name, with dicts in and out."""

    def __init__(self, address):
        self.channel = grpc.insecure_channel(address, options=[("grpc.enable_http_proxy", 0)])
        self.reflection = ProtoReflectionDescriptorDatabase(self.channel)
        self.pool = descriptor_pool.DescriptorPool(self.reflection)

    def service(self, name):
        # An interface is served while an object of it exists, and the bridge notices a new
        # one within half a second: the service of a card just made may take a moment to
        # appear. (A miss is a NOT_FOUND status here, where grpcio expects a KeyError.)
        for _ in range(40):
            try:
                return self.pool.FindServiceByName(name)
            except (KeyError, grpc.RpcError):
                time.sleep(0.05)
        return self.pool.FindServiceByName(name)

    def call(self, service, method, body, object_id=None):
        """`service.method(body)`; `object_id` picks the object (an ObjectRef's id)."""
        m = self.service(service).FindMethodByName(method)
        request = message_factory.GetMessageClass(m.input_type)
        reply = message_factory.GetMessageClass(m.output_type)
        stub = self.channel.unary_unary(
            f"/{service}/{method}",
            request_serializer=request.SerializeToString,
            response_deserializer=reply.FromString,
        )
        metadata = [("oxrmi-object", object_id)] if object_id else []
        out = stub(json_format.ParseDict(body, request()), metadata=metadata, timeout=10)
        return json_format.MessageToDict(out, preserving_proto_field_name=True).get("result")

    def app_error(self, e):
        """The application error of a failed call, from its status details, as a dict."""
        detail = rpc_status.from_call(e).details[0]  # an Any of `<package>.<Rpc>AppError`
        name = detail.type_url.rsplit("/", 1)[-1]
        error = message_factory.GetMessageClass(self.pool.FindMessageTypeByName(name))()
        detail.Unpack(error)
        return json_format.MessageToDict(error, preserving_proto_field_name=True)["error"]


def service_of(interface):
    """The gRPC service of an oxrmi interface: `demo.Card` -> `demo.card.Card`."""
    *modules, name = interface.split(".")
    return ".".join([*modules, re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower(), name])


def main(address):
    bridge = Bridge(address)
    library = "demo.library.Library"

    book = {"title": "Dune", "author": "Frank Herbert", "year": 1965}
    print("[python] Add ->", bridge.call(library, "Add", {"book": book}), "books")
    print("[python] services:", ", ".join(sorted(bridge.reflection.get_services())))
    found = bridge.call(library, "Find", {"title": "Dune"})
    print("[python] Find('Dune') ->", found)
    assert found == book, found

    try:
        bridge.call(library, "Find", {"title": "Nope"})
        raise AssertionError("Find('Nope') succeeded")
    except grpc.RpcError as e:
        error = bridge.app_error(e)
        print(f"[python] Find('Nope') -> {e.code().name}, details: {error}")
        assert error == {"not_found": {"title": "Nope"}}, error

    # A factory: the reply is an ObjectRef; its id in metadata calls that very object.
    card = bridge.call(library, "OpenCard", {"reader": "ada"})
    print("[python] OpenCard('ada') ->", card)
    card_service = service_of(card["interface"])
    borrowed = bridge.call(card_service, "Borrow", {"title": "Dune"}, object_id=card["id"])
    print("[python] card.Borrow('Dune') ->", borrowed)
    try:
        bridge.call(card_service, "Borrow", {"title": "Dune"}, object_id=card["id"])
        raise AssertionError("a second Borrow('Dune') succeeded")
    except grpc.RpcError as e:
        error = bridge.app_error(e)
        print(f"[python] card.Borrow('Dune') again -> {e.code().name}, details: {error}")
        assert error == {"already_lent": {}}, error
    loans = bridge.call(card_service, "Loans", {}, object_id=card["id"])
    print("[python] card.Loans() ->", loans)
    assert loans == ["Dune"], loans
    print("[python] all calls behaved")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(f"usage: {sys.argv[0]} HOST:PORT")
    main(sys.argv[1])
