// The version page's lineage graph: the versions in #lineage-graph's data-graph
// ({nodes: [{id, label, url, current}], edges: [{from, to, roles}]}) laid out in layers
// by dagre (parents left, children right; a version with two parents, such as a policy
// trained from an SFT and a reward model, has an edge from each), drawn as SVG. Each
// node links to its version's page. Without scripts the page's tables list the same.
(function () {
  "use strict";
  const holder = document.getElementById("lineage-graph");
  if (!holder || !window.dagre) return;
  const data = JSON.parse(holder.dataset.graph);
  const SVG = "http://www.w3.org/2000/svg";
  const BOX = { width: 200, height: 36 };
  const LABEL_CHARS = 28;

  const graph = new dagre.graphlib.Graph();
  graph.setGraph({ rankdir: "LR", nodesep: 24, ranksep: 90, edgesep: 16, marginx: 12, marginy: 12 });
  graph.setDefaultEdgeLabel(() => ({}));
  for (const node of data.nodes) graph.setNode(String(node.id), { ...BOX, node });
  for (const edge of data.edges) {
    const label = edge.roles.join(", ");
    // Room for the role on the edge (about 7 px a character at 11 px), so dagre keeps
    // nodes clear of it.
    graph.setEdge(String(edge.from), String(edge.to), { label, width: 7 * label.length, height: 14, edge });
  }
  dagre.layout(graph);

  function element(name, attributes, text) {
    const el = document.createElementNS(SVG, name);
    for (const [key, value] of Object.entries(attributes)) el.setAttribute(key, value);
    if (text !== undefined) el.textContent = text;
    return el;
  }

  const { width, height } = graph.graph();
  const svg = element("svg", {
    class: "chart",
    role: "img",
    "aria-labelledby": "lineage-title",
    viewBox: `0 0 ${width} ${height}`,
    width,
    height,
    "font-size": 12,
    "font-family": "system-ui, sans-serif",
  });
  svg.append(element("title", { id: "lineage-title" }, holder.dataset.title));
  const marker = element("marker", {
    id: "lineage-arrow",
    viewBox: "0 0 10 10",
    refX: 10,
    refY: 5,
    markerWidth: 7,
    markerHeight: 7,
    orient: "auto-start-reverse",
  });
  marker.append(element("path", { d: "M0,0 L10,5 L0,10 z", fill: "#555" }));
  const defs = element("defs", {});
  defs.append(marker);
  svg.append(defs);

  for (const e of graph.edges()) {
    const laid = graph.edge(e);
    const d = laid.points.map((p, i) => `${i ? "L" : "M"}${p.x.toFixed(1)},${p.y.toFixed(1)}`).join(" ");
    const g = element("g", {
      class: "edge",
      "data-edge": `${laid.edge.from}-${laid.edge.to}`,
      "data-role": laid.label,
    });
    const path = element("path", { d, fill: "none", stroke: "#555", "stroke-width": 1.5, "marker-end": "url(#lineage-arrow)" });
    path.append(element("title", {}, laid.label));
    g.append(path);
    g.append(element("text", { x: laid.x, y: laid.y + 4, "text-anchor": "middle", "font-size": 11, fill: "#444" }, laid.label));
    svg.append(g);
  }

  for (const id of graph.nodes()) {
    const laid = graph.node(id);
    const { node } = laid;
    const [x, y] = [laid.x - BOX.width / 2, laid.y - BOX.height / 2];
    const link = element("a", { href: node.url, class: "node", "data-node": node.id });
    if (node.current) link.setAttribute("aria-current", "page");
    const short = node.label.length > LABEL_CHARS ? `${node.label.slice(0, LABEL_CHARS - 1)}…` : node.label;
    link.append(element("title", {}, node.label));
    link.append(element("rect", {
      x, y, width: BOX.width, height: BOX.height, rx: 5,
      fill: node.current ? "#1d2330" : "#fff", stroke: "#1d2330",
    }));
    link.append(element("text", {
      x: laid.x, y: laid.y + 4, "text-anchor": "middle", fill: node.current ? "#fff" : "#1d2330",
    }, short));
    svg.append(link);
  }
  holder.replaceChildren(svg);
})();
