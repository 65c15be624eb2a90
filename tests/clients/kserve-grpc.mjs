// A KServe v2 gRPC client in another language's gRPC stack (grpc-js), generated at run time from the grid's .proto:
// ServerLive, ModelInfer on echo with raw_input_contents, and ModelStreamInfer on tiny-lm streaming its tokens.
// Usage: node kserve-grpc.mjs HOST:PORT PROTO_PATH. Prints one JSON object with what came back.
import grpc from '@grpc/grpc-js';
import protoLoader from '@grpc/proto-loader';

const [address, protoPath] = process.argv.slice(2);
const definition = protoLoader.loadSync(protoPath, { keepCase: true, longs: Number, defaults: true });
const inference = grpc.loadPackageDefinition(definition).inference;
const client = new inference.GRPCInferenceService(address, grpc.credentials.createInsecure());
const call = (method, request) => new Promise((resolve, reject) =>
  client[method](request, { deadline: Date.now() + 30000 }, (error, response) => (error ? reject(error) : resolve(response))));

const live = (await call('ServerLive', {})).live;

const raw = Buffer.alloc(16);
[1.5, -2, 3.25, 4].forEach((v, i) => raw.writeFloatLE(v, i * 4));
const echo = await call('ModelInfer', {
  model_name: 'echo',
  id: 'node-1',
  inputs: [{ name: 'x', datatype: 'FP32', shape: [2, 2] }],
  raw_input_contents: [raw],
});
const echoed = echo.raw_output_contents[0];
const values = [0, 1, 2, 3].map((i) => echoed.readFloatLE(i * 4));

const prompt = Buffer.from('Hi');
const promptRaw = Buffer.concat([Buffer.from(Uint32Array.of(prompt.length).buffer), prompt]);
const stream = client.ModelStreamInfer();
const tokens = [];
let final = null;
await new Promise((resolve, reject) => {
  stream.on('data', (message) => {
    if (message.error_message) {
      reject(new Error(message.error_message));
      return;
    }

    const response = message.infer_response;
    const isFinal = response.parameters?.triton_final_response?.bool_param === true;
    const text = response.raw_output_contents[0];
    const piece = text && text.length >= 4 ? text.subarray(4, 4 + text.readUInt32LE(0)).toString('utf8') : '';
    if (isFinal) {
      final = { text: piece, finish: response.parameters?.finish_reason?.string_param ?? null };
      stream.end();
    } else {
      tokens.push(piece);
    }
  });
  stream.on('end', resolve);
  stream.on('error', reject);
  stream.write({
    model_name: 'tiny-lm',
    id: 'node-gen',
    inputs: [{ name: 'text_input', datatype: 'BYTES', shape: [1] }],
    raw_input_contents: [promptRaw],
    parameters: { max_tokens: { int64_param: 5 }, temperature: { double_param: 0 } },
  });
});

client.close();
console.log(JSON.stringify({ live, id: echo.id, shape: echo.outputs[0].shape, values, tokens: tokens.length, final }));
