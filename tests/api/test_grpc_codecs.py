"""The gRPC codecs in process: V2 messages and TensorProto to numpy and back, error statuses, wire compatibility
with tritonclient's and tensorflow_serving's own messages (imported in the same process: our protos live in their
own descriptor pool)."""
from __future__ import annotations

import grpc
import numpy as np
import pytest

from app import errors
from app.api.dataplane import InferRequest, InferResponse, RequestedOutput
from app.api.grpc import grpc_predict_v2_pb2 as pb
from app.api.grpc import tf_tensors, v2_tensors
from app.api.grpc import tfserving_apis_pb2 as tfpb
from app.api.grpc.status import status_code
from app.api.v2_datatypes import DATATYPES

service_pb2 = pytest.importorskip("tritonclient.grpc.service_pb2")


def raw_request(arrays: dict[str, np.ndarray], **fields) -> pb.ModelInferRequest:
    from app.api.v2_datatypes import datatype_of

    request = pb.ModelInferRequest(model_name="m", **fields)
    for name, array in arrays.items():
        request.inputs.add(name=name, datatype=datatype_of(array.dtype), shape=array.shape)
        request.raw_input_contents.append(array.tobytes())
    return request


@pytest.mark.parametrize("datatype", list(DATATYPES))
def test_raw_inputs_of_every_datatype_decode_to_their_values(datatype):
    values = (np.arange(6).reshape(2, 3) % 2).astype(DATATYPES[datatype])
    decoded = v2_tensors.decode(raw_request({"x": values}))
    assert decoded.input_error is None
    np.testing.assert_array_equal(decoded.inputs["x"], values)
    assert decoded.inputs["x"].dtype == values.dtype


@pytest.mark.parametrize(("datatype", "field"), [(d, f) for d, f in v2_tensors.CONTENTS_FIELD.items()])
def test_typed_contents_of_every_datatype_decode_to_their_values(datatype, field):
    values = (np.arange(6).reshape(2, 3) % 2).astype(DATATYPES[datatype])
    request = pb.ModelInferRequest(model_name="m")
    tensor = request.inputs.add(name="x", datatype=datatype, shape=[2, 3])
    getattr(tensor.contents, field).extend(values.ravel().tolist())
    np.testing.assert_array_equal(v2_tensors.decode(request).inputs["x"], values)


def test_typed_integers_outside_their_datatype_are_an_input_error():
    request = pb.ModelInferRequest(model_name="m")
    request.inputs.add(name="x", datatype="INT8", shape=[1]).contents.int_contents.append(300)
    assert isinstance(v2_tensors.decode(request).input_error, errors.InvalidTensor)


def _shared_memory(request: pb.ModelInferRequest) -> None:
    request.inputs[0].parameters["shared_memory_region"].string_param = "region"


def _classification(request: pb.ModelInferRequest) -> None:
    request.outputs.add(name="y").parameters["classification"].int64_param = 3


@pytest.mark.parametrize(("mutate", "kind"), [
    (lambda r: r.raw_input_contents.append(b"\0" * 4), errors.InvalidRequest),  # more raw tensors than inputs
    (lambda r: r.inputs.add(name="x", datatype="FP32", shape=[1]), errors.InvalidRequest),  # a name twice
    (lambda r: setattr(r.inputs[0], "datatype", "BYTES"), errors.BadRequest),
    (lambda r: setattr(r.inputs[0], "datatype", "BF16"), errors.BadRequest),
    (lambda r: setattr(r, "model_version", "two"), errors.InvalidRequest),
    (_shared_memory, errors.BadRequest),
    (_classification, errors.BadRequest),
])
def test_malformed_envelopes_are_refused_before_the_model(mutate, kind):
    request = raw_request({"x": np.zeros((1, 4), np.float32)})
    mutate(request)
    with pytest.raises(kind):
        v2_tensors.decode(request)


def test_bad_tensors_wait_as_input_errors_until_the_model_is_known():
    short = raw_request({"x": np.zeros((1, 4), np.float32)})
    short.raw_input_contents[0] = b"\0" * 12
    assert isinstance(v2_tensors.decode(short).input_error, errors.InvalidRequest)
    nan = raw_request({"x": np.full((1, 4), np.nan, np.float32)})
    assert v2_tensors.decode(nan).input_error.code == "non_finite_value"


def test_the_envelope_carries_id_version_parameters_and_requested_outputs():
    request = raw_request({"x": np.zeros((1, 4), np.float32)}, id="r1", model_version="3")
    request.parameters["binary_data_output"].bool_param = False
    request.parameters["priority"].int64_param = 2
    request.outputs.add(name="y").parameters["binary_data"].bool_param = True
    decoded = v2_tensors.decode(request)
    assert (decoded.id, decoded.version) == ("r1", 3)
    assert decoded.parameters == {"binary_data_output": False, "priority": 2}
    assert decoded.outputs == (RequestedOutput("y", True),)


def answer(outputs: dict[str, np.ndarray], request_id: str | None = "r1") -> InferResponse:
    return InferResponse("m", 2, outputs, rows=2, id=request_id)


def test_outputs_are_raw_by_default_and_typed_when_any_is_asked_without_binary_data():
    outputs = {"a": np.arange(4, dtype=np.float32).reshape(2, 2), "b": np.array([[1], [0]], dtype=np.int64)}
    raw = v2_tensors.encode(InferRequest("m"), answer(outputs))
    assert (raw.id, raw.model_version, [o.name for o in raw.outputs]) == ("r1", "2", ["a", "b"])
    assert [np.frombuffer(r, v.dtype).tolist() for r, v in zip(raw.raw_output_contents, outputs.values())] == [
        [0.0, 1.0, 2.0, 3.0], [1, 0]]
    typed = v2_tensors.encode(InferRequest("m", outputs=(RequestedOutput("a", False), RequestedOutput("b"))),
                              answer(outputs))
    assert not typed.raw_output_contents
    assert list(typed.outputs[0].contents.fp32_contents) == [0.0, 1.0, 2.0, 3.0]
    assert list(typed.outputs[1].contents.int64_contents) == [1, 0] and list(typed.outputs[1].shape) == [2, 1]
    with pytest.raises(errors.InvalidRequest, match="raw only"):
        v2_tensors.encode(InferRequest("m", parameters={"binary_data_output": False}),
                          answer({"h": np.zeros(2, np.float16)}))


def test_tritonclient_messages_read_as_ours_and_ours_as_theirs():
    theirs = service_pb2.ModelInferRequest(model_name="dense", id="t1")
    tensor = theirs.inputs.add(name="features", datatype="FP32", shape=[1, 4])
    theirs.raw_input_contents.append(np.arange(4, dtype=np.float32).tobytes())
    tensor.parameters["p"].double_param = 0.5
    decoded = v2_tensors.decode(pb.ModelInferRequest.FromString(theirs.SerializeToString()))
    np.testing.assert_array_equal(decoded.inputs["features"], [[0, 1, 2, 3]])
    ours = v2_tensors.encode(decoded, answer({"probs": np.ones((1, 3), np.float32)}, decoded.id))
    read = service_pb2.ModelInferResponse.FromString(ours.SerializeToString())
    assert read.id == "t1" and np.frombuffer(read.raw_output_contents[0], np.float32).tolist() == [1.0, 1.0, 1.0]


NUMPY_TYPES = [np.float16, np.float32, np.float64, np.int8, np.int16, np.int32, np.int64, np.uint8, np.uint16,
               np.uint32, np.uint64, np.bool_]


@pytest.mark.parametrize("dtype", NUMPY_TYPES)
def test_tensor_protos_round_trip_every_dtype(dtype):
    values = (np.arange(6).reshape(3, 2) % 2).astype(dtype)
    proto = tf_tensors.to_proto(values)
    assert proto.tensor_content and [d.size for d in proto.tensor_shape.dim] == [3, 2]
    np.testing.assert_array_equal(tf_tensors.to_array(proto, "x"), values)


@pytest.mark.parametrize("dtype", NUMPY_TYPES)
def test_typed_tensor_fields_read_every_dtype_and_one_value_fills_the_shape(dtype):
    values = (np.arange(6).reshape(3, 2) % 2).astype(dtype)
    kind, field = tf_tensors.data_type(dtype), tf_tensors.DTYPES[tf_tensors.data_type(dtype)][1]
    proto = tfpb.TensorProto(dtype=kind, tensor_shape=tf_tensors.shape_proto(values.shape))
    getattr(proto, field).extend((values.view(np.uint16) if dtype is np.float16 else values).ravel().tolist())
    np.testing.assert_array_equal(tf_tensors.to_array(proto, "x"), values)
    one = tfpb.TensorProto(dtype=kind, tensor_shape=tf_tensors.shape_proto((2, 2)))
    getattr(one, field).append(1 if dtype is not np.float16 else int(np.float16(1).view(np.uint16)))
    np.testing.assert_array_equal(tf_tensors.to_array(one, "x"), np.ones((2, 2), dtype))


@pytest.mark.parametrize(("proto", "kind"), [
    (tfpb.TensorProto(dtype=tfpb.DT_STRING), errors.BadRequest),
    (tfpb.TensorProto(dtype=tfpb.DT_FLOAT, tensor_shape=tfpb.TensorShapeProto(unknown_rank=True)),
     errors.InvalidRequest),
    (tfpb.TensorProto(dtype=tfpb.DT_FLOAT, tensor_shape=tf_tensors.shape_proto((2,)), float_val=[1, 2, 3]),
     errors.InvalidRequest),
    (tfpb.TensorProto(dtype=tfpb.DT_FLOAT, tensor_shape=tf_tensors.shape_proto((2,)), tensor_content=b"\0" * 4),
     errors.InvalidRequest),
    (tfpb.TensorProto(dtype=tfpb.DT_UINT8, tensor_shape=tf_tensors.shape_proto((1,)), int_val=[256]),
     errors.InvalidTensor),
    (tfpb.TensorProto(dtype=tfpb.DT_FLOAT, tensor_shape=tf_tensors.shape_proto((1,)), float_val=[float("inf")]),
     errors.InvalidTensor),
])
def test_malformed_tensor_protos_are_refused(proto, kind):
    with pytest.raises(kind):
        tf_tensors.to_array(proto, "x")


def test_tensorflow_serving_messages_read_as_ours_and_ours_as_theirs():
    tf = pytest.importorskip("tensorflow")
    from tensorflow_serving.apis import get_model_metadata_pb2, predict_pb2

    theirs = predict_pb2.PredictRequest()
    theirs.model_spec.name, theirs.model_spec.version.value = "dense", 2
    theirs.inputs["features"].CopyFrom(tf.make_tensor_proto(np.ones((2, 4), np.float32)))
    ours = tfpb.PredictRequest.FromString(theirs.SerializeToString())
    assert ours.model_spec.version.value == 2
    np.testing.assert_array_equal(tf_tensors.to_array(ours.inputs["features"], "features"), np.ones((2, 4)))
    response = tfpb.GetModelMetadataResponse()
    response.metadata["signature_def"].Pack(tfpb.SignatureDefMap(signature_def={"serving_default": tfpb.SignatureDef(
        method_name="tensorflow/serving/predict")}))
    read = get_model_metadata_pb2.GetModelMetadataResponse.FromString(response.SerializeToString())
    signatures = get_model_metadata_pb2.SignatureDefMap()
    assert read.metadata["signature_def"].Unpack(signatures)
    assert signatures.signature_def["serving_default"].method_name == "tensorflow/serving/predict"


@pytest.mark.parametrize(("error", "code"), [
    (errors.InvalidRequest("x"), grpc.StatusCode.INVALID_ARGUMENT),
    (errors.InputMismatch("x"), grpc.StatusCode.INVALID_ARGUMENT),
    (errors.TooManyRows("x"), grpc.StatusCode.INVALID_ARGUMENT),
    (errors.PayloadTooLarge("x"), grpc.StatusCode.RESOURCE_EXHAUSTED),
    (errors.Overloaded("x"), grpc.StatusCode.RESOURCE_EXHAUSTED),
    (errors.ModelNotFound("x"), grpc.StatusCode.NOT_FOUND),
    (errors.VersionNotFound("x"), grpc.StatusCode.NOT_FOUND),
    (errors.ModelNotAvailable("x"), grpc.StatusCode.UNAVAILABLE),
    (errors.DeadlineExceeded("x"), grpc.StatusCode.DEADLINE_EXCEEDED),
    (errors.InternalError("x"), grpc.StatusCode.INTERNAL),
])
def test_serving_errors_map_to_grpc_status_codes(error, code):
    assert status_code(error) == code


def wire(request: object) -> object:
    from app.api.grpc.v2_wire import WireInferRequest

    return WireInferRequest.FromString(request.SerializeToString())


def test_raw_contents_off_the_wire_are_views_of_the_received_bytes_and_decode_as_protobuf_does():
    theirs = service_pb2.ModelInferRequest(model_name="dense", model_version="2", id="w1")
    arrays = {"a": np.arange(6, dtype=np.float32).reshape(2, 3), "b": np.array([[7], [8]], np.int64)}
    for name, array in arrays.items():  # raw entries between other fields: the scan keeps those
        theirs.inputs.add(name=name, datatype="FP32" if array.dtype == np.float32 else "INT64", shape=array.shape)
        theirs.raw_input_contents.append(array.tobytes())
    theirs.parameters["priority"].int64_param = 3
    theirs.outputs.add(name="probs")
    got = wire(theirs)
    assert [bytes(view) for view in got.raw] == [a.tobytes() for a in arrays.values()]
    assert all(isinstance(view, memoryview) for view in got.raw) and not got.message.raw_input_contents
    decoded, expected = v2_tensors.decode(got.message, got.raw), v2_tensors.decode(
        pb.ModelInferRequest.FromString(theirs.SerializeToString()))
    assert (decoded.model, decoded.version, decoded.id, decoded.parameters, decoded.outputs) == (
        expected.model, expected.version, expected.id, expected.parameters, expected.outputs) == (
        "dense", 2, "w1", {"priority": 3}, (RequestedOutput("probs", None),))
    for name, array in arrays.items():
        np.testing.assert_array_equal(decoded.inputs[name], array)
        assert decoded.inputs[name].dtype == array.dtype


def test_typed_requests_and_bad_raw_lengths_off_the_wire_answer_as_before():
    typed = pb.ModelInferRequest(model_name="m")
    typed.inputs.add(name="x", datatype="FP32", shape=[2]).contents.fp32_contents.extend([1.0, 2.0])
    got = wire(typed)
    assert got.raw == () and v2_tensors.decode(got.message, got.raw).inputs["x"].tolist() == [1.0, 2.0]
    short = raw_request({"x": np.zeros(4, np.float32)})
    short.raw_input_contents[0] = b"\0" * 12
    got = wire(short)
    assert isinstance(v2_tensors.decode(got.message, got.raw).input_error, errors.InvalidRequest)
    extra = raw_request({"x": np.zeros(1, np.float32)})
    extra.raw_input_contents.append(b"\0" * 4)
    with pytest.raises(errors.InvalidRequest, match="raw_input_contents holds 2 tensors for 1 inputs"):
        got = wire(extra)
        v2_tensors.decode(got.message, got.raw)


def test_malformed_bytes_off_the_wire_fail_as_protobuf_fails():
    from google.protobuf.message import DecodeError

    from app.api.grpc.v2_wire import WireInferRequest

    whole = raw_request({"x": np.zeros(4, np.float32)}).SerializeToString()
    for broken in (whole[:-3], b"\x3a\xff\xff\xff\xff\x0f", b"\xff"):
        with pytest.raises(DecodeError):
            WireInferRequest.FromString(broken)
