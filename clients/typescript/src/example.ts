/**
 * Classify image files: one call each, then all of them over one stream.
 *
 *   node dist/example.js HOST:PORT photo.jpg [more.jpg ...] [--language en] [--token T]
 */
import { readFileSync } from "node:fs";
import { parseArgs } from "node:util";
import type { MessageInitShape } from "@bufbuild/protobuf";
import { Code, ConnectError } from "@connectrpc/connect";
import { ClassifyRequestSchema, connect, type ClassifyResponse } from "./index.js";

const { values, positionals } = parseArgs({
  allowPositionals: true,
  options: { language: { type: "string", default: "zh" }, token: { type: "string" } },
});
const [address, ...files] = positionals;
if (address === undefined || files.length === 0) {
  console.error("usage: example.js HOST:PORT IMAGE... [--language en] [--token TOKEN]");
  process.exit(2);
}
const client = connect(address, { token: values.token });

function show(name: string, response: ClassifyResponse): void {
  const best = response.labels
    .map((label) => `${label.classId} ${label.label} ${label.score.toFixed(4)}`)
    .join(", ");
  console.log(`${name}: ${best} (${response.model}, batch of ${response.timing?.batchSize})`);
}

const models = await client.listModels({});
console.log(`models: ${models.models.map((model) => model.name).join(", ")}`);
for (const file of files) {
  try {
    // A deadline of 10 s: past it the server drops the request before the model runs.
    const response = await client.classify(
      { source: { case: "image", value: readFileSync(file) }, topK: 3, language: values.language },
      { timeoutMs: 10_000 },
    );
    show(file, response);
  } catch (error) {
    const failure = ConnectError.from(error);
    console.log(`${file}: ${Code[failure.code]}: ${failure.rawMessage}`);
  }
}

async function* frames(): AsyncGenerator<MessageInitShape<typeof ClassifyRequestSchema>> {
  for (const file of files) {
    const source = { case: "image", value: readFileSync(file) } as const;
    yield { source, topK: 1, language: values.language, requestId: file };
  }
}
for await (const response of client.classifyStream(frames())) {
  if (response.error !== undefined) {
    const { code, message } = response.error;
    console.log(`stream ${response.requestId}: error ${code}: ${message}`);
  } else {
    show(`stream ${response.requestId}`, response);
  }
}
