// Drives the grid with the official OpenAI Node SDK, unchanged but for its base URL: a streamed chat completion and a
// plain completion. Prints one JSON line for the test to check. Usage: node openai-stream.mjs http://127.0.0.1:PORT/v1
import OpenAI from 'openai';

const client = new OpenAI({ baseURL: process.argv[2], apiKey: 'not-needed' });
const stream = await client.chat.completions.create({
  model: 'tiny-lm',
  messages: [{ role: 'user', content: 'Hi' }],
  max_tokens: 12,
  temperature: 0,
  stream: true,
  stream_options: { include_usage: true },
});
let chunks = 0;
let text = '';
let finish = null;
let streamUsage = null;
for await (const chunk of stream) {
  chunks++;
  text += chunk.choices[0]?.delta?.content ?? '';
  finish = chunk.choices[0]?.finish_reason ?? finish;
  streamUsage = chunk.usage ?? streamUsage;
}

const completion = await client.completions.create({ model: 'tiny-lm', prompt: 'Once', max_tokens: 5, temperature: 0 });
console.log(JSON.stringify({ chunks, text, finish, streamUsage, completion: completion.choices[0].text, usage: completion.usage }));
