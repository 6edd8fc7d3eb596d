// The summarize worker: a stand-in for a job loop that calls the model.
// It reads its settings from the environment pidwatch gives it.
const name = process.env.WORKER_NAME || "summarize";
const model = process.env.AI_MODEL || "unset";
if (!process.env.OPENAI_API_KEY) {
  console.error(`${name}: OPENAI_API_KEY is not set`);
  process.exit(1);
}
console.log(`${name}: ready (model ${model})`);
const timer = setInterval(() => console.log(`${name}: waiting for jobs`), 60_000);
process.on("SIGTERM", () => {
  clearInterval(timer);
  console.log(`${name}: stopping`);
  process.exit(0);
});
