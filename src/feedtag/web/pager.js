// Pages of a list the server answers in id order with `limit` and `cursor` (GET
// /api/v1/cameras): the cursor the shown page was asked with (null: the first), the cursors
// of the pages before it (for Previous), and the next page's cursor from the latest answer
// (null: none). The camera grid and the Admin view's camera table each keep one.

import { $ } from "./dom.js";

const FIRST = Object.freeze({ cursor: null, earlier: [], next: null });

export class Pager {
  /** `size` items a page; `ids` are the selectors of the pager's `nav`, its `range` text and
   * its `prev` and `next` buttons. */
  constructor(size, ids) {
    this.size = size;
    this.ids = ids;
    this.page = FIRST;
  }

  /** The cursor the shown page was asked with (null: the first page). */
  get cursor() {
    return this.page.cursor;
  }

  first() {
    this.page = FIRST;
  }

  /** The query of the shown page: `limit`, and `cursor` past the first. */
  params() {
    return this.page.cursor ? { limit: this.size, cursor: this.page.cursor } : { limit: this.size };
  }

  /** The server answered the shown page; `next` is its `next_cursor`. */
  answered(next) {
    this.page = { ...this.page, next: next || null };
  }

  /** One page on (step 1) or back (-1); false when there is none that way. */
  turn(step) {
    const { cursor, earlier, next } = this.page;
    if (step > 0 && next) this.page = { cursor: next, earlier: [...earlier, cursor], next: null };
    else if (step < 0 && cursor) this.page = { cursor: earlier.at(-1) ?? null, earlier: earlier.slice(0, -1), next: null };
    else return false;
    return true;
  }

  /** Shows "49–96 of 5000" and the buttons for a page of `shown` items of `total`; nothing
   * when everything fits on one page. */
  show(shown, total) {
    const paged = Boolean(this.page.cursor || this.page.next);
    $(this.ids.nav).hidden = !paged;
    if (!paged) return;
    const first = this.page.earlier.length * this.size + 1;
    $(this.ids.range).textContent = shown ? `${first}–${first + shown - 1} of ${total}` : `none of ${total}`;
    $(this.ids.prev).disabled = !this.page.cursor;
    $(this.ids.next).disabled = !this.page.next;
  }

  /** Calls `onTurn` after Previous or Next turned the page. */
  bind(onTurn) {
    $(this.ids.prev).addEventListener("click", () => { if (this.turn(-1)) onTurn(); });
    $(this.ids.next).addEventListener("click", () => { if (this.turn(1)) onTurn(); });
  }
}
