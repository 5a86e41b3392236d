import { describe, expect, it } from 'vitest';
import { cleanPiece, isCjkIdeograph, splitWords } from './align-words.js';

describe('splitWords: whitespace languages', () => {
  it('keeps letters, numbers and apostrophes of each piece, drops punctuation-only pieces', () => {
    expect(splitWords('And so, my fellow Americans: ask not — it\'s a 50-minute talk!', 'English')).toEqual([
      'And', 'so', 'my', 'fellow', 'Americans', 'ask', 'not', "it's", 'a', '50minute', 'talk',
    ]);
    // Digits stay, separators inside numbers go; other Unicode numbers (No) are numbers too.
    expect(splitWords('3.14 1,000 ½ x² (ok)', 'English')).toEqual(['314', '1000', '½', 'x²', 'ok']);
    // Only the ASCII apostrophe is kept; the typographic one is punctuation.
    expect(splitWords('don\u2019t can\'t', 'English')).toEqual(['dont', "can't"]);
  });

  it('splits on Python whitespace only', () => {
    // NBSP and the ideographic space split (str.isspace); ZWSP and BOM do not, and are dropped.
    expect(splitWords('hello\u00a0world\u3000again\u2003end', 'English')).toEqual(['hello', 'world', 'again', 'end']);
    expect(splitWords('a\u200bb c\ufeffd', 'English')).toEqual(['ab', 'cd']);
    expect(splitWords('  \n\t ', 'English')).toEqual([]);
    expect(splitWords('... — !!!', 'German')).toEqual([]);
  });

  it('drops combining marks (category M), as the official clean_token does', () => {
    expect(splitWords('cafe\u0301 caf\u00e9', 'French')).toEqual(['cafe', 'caf\u00e9']);
  });

  it('makes every CJK ideograph its own unit (Chinese)', () => {
    expect(splitWords('我们今天去北京。', 'Chinese')).toEqual(['我', '们', '今', '天', '去', '北', '京']);
    expect(splitWords('你好,世界', 'Cantonese')).toEqual(['你', '好', '世', '界']);
  });

  it('mixed scripts: Latin and digit runs stay whole between ideographs', () => {
    expect(splitWords('我用iPhone 15拍了照片,OK?', 'Chinese')).toEqual(['我', '用', 'iPhone', '15', '拍', '了', '照', '片', 'OK']);
    // Extension B (outside the BMP) and compatibility ideographs are ideographs; kana are not.
    expect(splitWords('a\u{20000}b \uf900ひらがな', 'English')).toEqual(['a', '\u{20000}', 'b', '\uf900', 'ひらがな']);
    expect(splitWords('Привет мир, ça va?', 'Russian')).toEqual(['Привет', 'мир', 'ça', 'va']);
  });

  it('isCjkIdeograph covers exactly the listed ranges at their edges', () => {
    const inside = [0x4e00, 0x9fff, 0x3400, 0x4dbf, 0x20000, 0x2a6df, 0x2a700, 0x2b73f, 0x2b740, 0x2b81f, 0x2b820, 0x2ceaf, 0xf900, 0xfaff];
    const outside = [0x4dff, 0xa000, 0x33ff, 0x1ffff, 0x2a6e0, 0x2ceb0, 0xf8ff, 0xfb00, 0x3042];
    for (const c of inside) expect(isCjkIdeograph(String.fromCodePoint(c))).toBe(true);
    for (const c of outside) expect(isCjkIdeograph(String.fromCodePoint(c))).toBe(false);
  });
});

describe('splitWords: Japanese and Korean (Intl.Segmenter)', () => {
  it('Japanese: word segments, punctuation dropped, kanji compounds not cut into characters', () => {
    const text = '今日は良い天気ですね。東京に行きます!';
    const units = splitWords(text, 'Japanese');
    expect(units.join('')).toBe(cleanPiece(text));
    expect(units).toContain('東京');
    expect(units).toContain('天気');
    expect(units.length).toBeGreaterThanOrEqual(6);
    expect(splitWords(text, 'JAPANESE')).toEqual(units);
  });

  it('Korean: space-separated words (eojeol) kept, punctuation dropped', () => {
    expect(splitWords('안녕하세요, 저는 학생입니다.', 'Korean')).toEqual(['안녕하세요', '저는', '학생입니다']);
    expect(splitWords('?!', 'korean')).toEqual([]);
  });
});
