// Drives the official OpenAI and Anthropic SDKs against BASE_URL (an Airlock gateway, or the
// simulated provider directly) and checks that each call yields what an application would use:
// some text or a tool call, and token usage where the SDK surfaces it.
//
// The gateway injects the real provider key, so this process must not hold one: the SDK
// constructors insist on a key, hence the placeholder, which the gateway strips.
//
// Env: BASE_URL (required), OPENAI_MODEL, ANTHROPIC_MODEL, SDK_TIMEOUT_MS.
// Prints "ok <name>" or "FAIL <name>: <error>" per check; exits 1 if any check failed.
import Anthropic from '@anthropic-ai/sdk';
import OpenAI from 'openai';

const baseURL = (process.env.BASE_URL ?? '').replace(/\/+$/, '');
if (!baseURL) {
  console.error('run.mjs: set BASE_URL, e.g. BASE_URL=http://100.80.0.1');
  process.exit(2);
}
const openaiModel = process.env.OPENAI_MODEL || 'gpt-5.5';
const anthropicModel = process.env.ANTHROPIC_MODEL || 'claude-sonnet-4-6';
const timeout = Number(process.env.SDK_TIMEOUT_MS || 30000);
const placeholderKey = 'unused-by-airlock';

// Retries would hide a failing first attempt and multiply the wait on a dead gateway.
const openai = new OpenAI({apiKey: placeholderKey, baseURL: `${baseURL}/v1`, maxRetries: 0, timeout});
const anthropic = new Anthropic({apiKey: placeholderKey, baseURL, maxRetries: 0, timeout});

const prompt = 'Say hello in five words.';

function check(condition, message) {
  if (!condition) throw new Error(message);
}

function isCount(n) {
  return Number.isInteger(n) && n >= 0;
}

function checkOpenAIUsage(usage, inputField, outputField) {
  check(usage, 'no usage');
  check(isCount(usage[inputField]) && isCount(usage[outputField]),
        `usage lacks ${inputField}/${outputField}: ${JSON.stringify(usage)}`);
  check(usage[inputField] + usage[outputField] > 0, `usage is all zero: ${JSON.stringify(usage)}`);
}

function checkAnthropicMessage(message) {
  check(message?.type === 'message', `not a message: ${JSON.stringify(message)?.slice(0, 200)}`);
  const text = message.content.filter((b) => b.type === 'text').map((b) => b.text).join('');
  const tools = message.content.filter((b) => b.type === 'tool_use');
  check(text.length > 0 || tools.length > 0, 'no text and no tool_use block');
  check(isCount(message.usage?.input_tokens) && isCount(message.usage?.output_tokens),
        `usage missing: ${JSON.stringify(message.usage)}`);
  check(message.usage.input_tokens + message.usage.output_tokens > 0, 'usage is all zero');
}

const checks = {
  async 'openai.chat.completions.create'() {
    const completion = await openai.chat.completions.create({
      model: openaiModel,
      messages: [{role: 'user', content: prompt}],
    });
    const message = completion.choices?.[0]?.message;
    check(message, 'no choices[0].message');
    check((message.content ?? '').length > 0 || (message.tool_calls ?? []).length > 0,
          'no content and no tool_calls');
    checkOpenAIUsage(completion.usage, 'prompt_tokens', 'completion_tokens');
  },

  async 'openai.chat.completions.create(stream)'() {
    const stream = await openai.chat.completions.create({
      model: openaiModel,
      messages: [{role: 'user', content: prompt}],
      stream: true,
      stream_options: {include_usage: true},
    });
    let text = '';
    let toolCalls = 0;
    let usage;
    let chunks = 0;
    for await (const chunk of stream) {
      ++chunks;
      const delta = chunk.choices?.[0]?.delta;
      text += delta?.content ?? '';
      toolCalls += delta?.tool_calls?.length ?? 0;
      if (chunk.usage) usage = chunk.usage;
    }
    check(chunks > 0, 'stream had no chunks');
    check(text.length > 0 || toolCalls > 0, `${chunks} chunks but no text and no tool call`);
    checkOpenAIUsage(usage, 'prompt_tokens', 'completion_tokens');
  },

  async 'openai.responses.create'() {
    const response = await openai.responses.create({model: openaiModel, input: prompt});
    check(response?.object === 'response', `not a response: ${JSON.stringify(response)?.slice(0, 200)}`);
    const calls = (response.output ?? []).filter((item) => item.type === 'function_call');
    check((response.output_text ?? '').length > 0 || calls.length > 0, 'no output_text and no function_call');
    checkOpenAIUsage(response.usage, 'input_tokens', 'output_tokens');
  },

  async 'openai.responses.create(stream)'() {
    const stream = await openai.responses.create({model: openaiModel, input: prompt, stream: true});
    let text = '';
    let completed;
    const calls = [];
    for await (const event of stream) {
      if (event.type === 'response.output_text.delta') text += event.delta;
      else if (event.type === 'response.output_item.done' && event.item?.type === 'function_call') calls.push(event.item);
      else if (event.type === 'response.completed') completed = event.response;
      else if (event.type === 'response.failed' || event.type === 'error') {
        throw new Error(`stream reported ${event.type}: ${JSON.stringify(event).slice(0, 200)}`);
      }
    }
    check(completed, 'no response.completed event');
    check(text.length > 0 || calls.length > 0, 'no output_text deltas and no function_call');
    checkOpenAIUsage(completed.usage, 'input_tokens', 'output_tokens');
  },

  async 'anthropic.messages.create'() {
    const message = await anthropic.messages.create({
      model: anthropicModel,
      max_tokens: 256,
      messages: [{role: 'user', content: prompt}],
    });
    checkAnthropicMessage(message);
  },

  async 'anthropic.messages.stream'() {
    const stream = anthropic.messages.stream({
      model: anthropicModel,
      max_tokens: 256,
      messages: [{role: 'user', content: prompt}],
    });
    checkAnthropicMessage(await stream.finalMessage());
  },
};

let failures = 0;
for (const [name, run] of Object.entries(checks)) {
  try {
    await run();
    console.log(`ok ${name}`);
  } catch (err) {
    ++failures;
    const status = err?.status ? ` (HTTP ${err.status})` : '';
    // "Connection error." alone does not say whether nothing listens or the peer reset.
    let cause;
    for (let inner = err?.cause; inner; inner = inner.cause) cause = inner.code ?? inner.message;
    const detail = String(err?.message ?? err).replace(/\s+/g, ' ');
    console.log(`FAIL ${name}: ${detail}${status}${cause ? ` [${cause}]` : ''}`);
  }
}
process.exit(failures === 0 ? 0 : 1);
