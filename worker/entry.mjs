// The piscina worker entry. Plain JavaScript on purpose: on Node 20, tsx's ESM hook is
// not active inside worker threads, so it is registered here, before any .ts is imported
// (the test files and haltpoint's own worker modules).
import { register } from "tsx/esm/api";

register();
const { default: handleTask } = await import("./task.ts");

export default handleTask;
