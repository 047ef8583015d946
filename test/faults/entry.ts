// bin/cellfm.js for the sources (bin/ runs the compiled dist/): the fault suite spawns this.
import { main } from "../../src/cli.js";
main(process.argv.slice(2)).catch((err) => {
  console.error(`cellfm: ${err?.message ?? err}`);
  process.exit(1);
});
