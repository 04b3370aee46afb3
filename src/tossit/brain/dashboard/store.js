// The page's shared state and a tiny publish/subscribe between the live stream
// and the views.

export const state = {
  me: null, // the /api/keys/me body of the signed-in key
  authDisabled: false,
  status: null, // latest /api/status (from the stream)
  nodes: null, // latest /api/nodes (from the stream)
  events: [], // newest first; live ones are added at the front
  connected: false,
  updatedAt: 0, // when the stream last brought anything (ms)
};

const topics = new Map();

/** Subscribe to a topic; returns the function that unsubscribes. */
export function on(topic, fn) {
  if (!topics.has(topic)) topics.set(topic, new Set());
  topics.get(topic).add(fn);
  return () => topics.get(topic).delete(fn);
}

export function emit(topic, data) {
  for (const fn of [...(topics.get(topic) || [])]) {
    try {
      fn(data);
    } catch (exc) {
      console.error(`listener for ${topic} failed`, exc);
    }
  }
}

export function nodeName(id) {
  const n = (state.nodes || []).find((x) => x.id === id);
  return n ? n.name : id;
}

export function role() {
  return state.me ? state.me.role : "readonly";
}
