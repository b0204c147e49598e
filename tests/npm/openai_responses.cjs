// Drives the emulator with the official `openai` npm package:
// responses.create({background: true, raw_prompt_tokens, ...}) then
// responses.retrieve(id) until the response completes. Prints one JSON line
// with what it saw; exits non-zero on failure. Inputs via the environment:
// OPENAI_PKG_DIR (folder holding node_modules/openai), EMU_BASE_URL (ends in
// /v1), EMU_API_KEY.
'use strict';

const path = require('path');

async function main() {
  const pkg = require(require.resolve('openai', {
    paths: [path.join(process.env.OPENAI_PKG_DIR, 'node_modules')],
  }));
  const OpenAI = pkg.OpenAI || pkg.default || pkg;
  const client = new OpenAI({
    baseURL: process.env.EMU_BASE_URL,
    apiKey: process.env.EMU_API_KEY,
    maxRetries: 2,
    timeout: 20000,
  });
  const created = await client.responses.create({
    model: 'emulator/toy',
    input: '.',
    background: true,
    raw_prompt_tokens: [151644, 872, 198],
    max_output_tokens: 8,
    include: ['message.output_text.logprobs'],
    metadata: { completion_window: 'priority' },
  });
  let current = created;
  for (let i = 0; i < 2000 && current.status !== 'completed'; ++i) {
    if (['failed', 'cancelled', 'incomplete'].includes(current.status))
      break;
    if (i > 0)
      await new Promise((resolve) => setTimeout(resolve, 5));
    current = await client.responses.retrieve(created.id);
  }
  const part = (current.output || [])
    .flatMap((item) => item.content || [])
    .find((c) => c.type === 'output_text') || {};
  process.stdout.write(JSON.stringify({
    created_id: created.id,
    created_status: created.status,
    id: current.id,
    status: current.status,
    output_text: current.output_text,
    text: part.text,
    token_ids: part.token_ids,
    logprobs: part.logprobs,
    stop_reason: part.stop_reason,
    usage: current.usage,
  }) + '\n');
}

main().catch((err) => {
  process.stderr.write('openai client failed: ' + (err && err.message) + '\n');
  process.exit(1);
});
