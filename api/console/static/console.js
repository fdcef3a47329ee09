// Charts for the dashboards: each <div class="chart" data-chart='{"x":[..],"series":[{"name":..,"data":[..]}]}'>
// is drawn by ECharts (vendored, window.echarts). Money arrives in fen and is shown in yuan.
function drawCharts(root) {
  (root || document).querySelectorAll(".chart[data-chart]").forEach(function (el) {
    if (!window.echarts || el.dataset.drawn) return;
    var spec = JSON.parse(el.dataset.chart);
    var chart = echarts.init(el, null, { renderer: "canvas" });
    var axes = spec.axes || [{ type: "value" }];
    chart.setOption({
      animation: false,
      tooltip: { trigger: "axis" },
      legend: { top: 0 },
      grid: { left: 60, right: 60, top: 36, bottom: 30 },
      xAxis: { type: "category", data: spec.x },
      yAxis: axes,
      series: spec.series.map(function (s) {
        return { name: s.name, type: s.type || "line", data: s.data, yAxisIndex: s.axis || 0, smooth: true };
      }),
    });
    el.dataset.drawn = "1";
  });
}
document.addEventListener("DOMContentLoaded", function () { drawCharts(document); });
document.addEventListener("htmx:afterSwap", function (e) { drawCharts(e.target); });
